from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskgrant.emulator import EmulatedCluster

from .harness import CRDS, Api, OperatorProcess, operator_process


@pytest.fixture
def cluster() -> Iterator[EmulatedCluster]:
    with EmulatedCluster(crds=CRDS) as emulated:
        yield emulated


@pytest.fixture
def api(cluster: EmulatedCluster) -> Api:
    return Api(cluster.url, cluster.token)


@pytest.fixture
def permissive_policy(api: Api) -> dict[str, Any]:
    """Lifecycle tests are about the lifecycle: one policy allows whatever the never-grant list does."""
    return api.create_policy("allow-everything-allowed", targetNamespaces={"selector": {}})


@pytest.fixture
def operator(cluster: EmulatedCluster, tmp_path: Path) -> Iterator[OperatorProcess]:
    yield from operator_process(cluster, tmp_path, "--max-duration", "1h")
