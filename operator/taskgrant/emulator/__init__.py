"""An in-memory Kubernetes API server for tests, the demo and the benchmark (see core)."""

from taskgrant.emulator.core import (
    ClusterEmulator,
    EmulatedCluster,
    Fault,
    ServedRequest,
    declare_crd,
    load_crds,
    main,
    parse_field_selector,
    parse_label_selector,
)

__all__ = [
    "ClusterEmulator",
    "EmulatedCluster",
    "Fault",
    "ServedRequest",
    "declare_crd",
    "load_crds",
    "main",
    "parse_field_selector",
    "parse_label_selector",
]
