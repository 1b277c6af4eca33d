{{/* The chart name, or nameOverride. */}}
{{- define "taskgrant-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of every object; "<release>-<chart>" unless the release name already has the chart's. */}}
{{- define "taskgrant-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels: stable for the release's life, so they never change on upgrade. */}}
{{- define "taskgrant-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taskgrant-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Every object's labels. managed-by stays Helm: the operator sweeps objects labelled as its own. */}}
{{- define "taskgrant-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "taskgrant-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: taskgrant-operator
{{- end }}

{{- define "taskgrant-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "taskgrant-operator.fullname" .) .Values.serviceAccount.name }}
{{- else if .Values.serviceAccount.name }}
{{- .Values.serviceAccount.name }}
{{- else }}
{{- fail "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" }}
{{- end }}
{{- end }}

{{- define "taskgrant-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The binding subject: the operator's ServiceAccount in the release namespace. */}}
{{- define "taskgrant-operator.subject" -}}
- kind: ServiceAccount
  name: {{ include "taskgrant-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}
