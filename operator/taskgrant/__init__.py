"""taskgrant-operator: Kubernetes access that lives exactly as long as its Job."""

__version__ = "0.1.0"
