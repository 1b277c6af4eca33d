"""Where credentials come from: in a Pod its ServiceAccount, else a kubeconfig, as kubectl reads it.

The operator, the demo and the kubectl plugin all connect through here, so they agree on which
cluster and which user a kubeconfig means.
"""

from __future__ import annotations

import os
from pathlib import Path

import kubernetes

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# Connections per client: the operator's API threads each hold one.
CONNECTION_POOL_SIZE = 32

ConfigError = kubernetes.config.ConfigException


def _kubeconfig_path(kubeconfig: str | None) -> str | None:
    # The kubernetes package reads KUBECONFIG once, at import; read it now, as kubectl does.
    return kubeconfig or os.environ.get("KUBECONFIG") or None


def load_configuration(
    kubeconfig: str | None = None, context: str | None = None
) -> kubernetes.client.Configuration:
    """In-cluster credentials when running in a Pod with no kubeconfig or context asked for, else the
    kubeconfig (KUBECONFIG, then ~/.kube/config). Raises ConfigError when neither is usable."""
    configuration = kubernetes.client.Configuration()
    path = _kubeconfig_path(kubeconfig)
    if path is None and context is None:
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
            return configuration
        except ConfigError:
            pass
    kubernetes.config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return configuration


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the kubeconfig context in use, else the Pod's own in a cluster, else default."""
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(
            config_file=_kubeconfig_path(kubeconfig)
        )
    except (ConfigError, OSError):
        try:
            return IN_CLUSTER_NAMESPACE.read_text(encoding="utf-8").strip() or "default"
        except OSError:
            return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")
