"""docs/policies.md stays true to the code: the never-grant tables and the sample `taskgrant check` run."""

import os
import re
from pathlib import Path

import pytest

from taskgrant.cli.check import main
from taskgrant.domain.policy import CLUSTER_SCOPED, NEVER_GRANT, Forbidden

ROOT = Path(__file__).parents[2]
POLICIES_DOC = (ROOT / "docs" / "policies.md").read_text()


def table_row(cell: str) -> str:
    [row] = [line for line in POLICIES_DOC.splitlines() if line.startswith("|") and f"| {cell} |" in line]
    return row


def shown(group: str) -> str:
    return '`""` (core)' if group == "" else f"`{group}`"


@pytest.mark.parametrize("forbidden", NEVER_GRANT, ids=lambda forbidden: forbidden.why)
def test_every_never_grant_entry_is_documented(forbidden: Forbidden) -> None:
    row = table_row(forbidden.why)
    names = [*(forbidden.resources or ()), *(forbidden.verbs or ())]
    for cell in [*map(shown, forbidden.groups or ()), *(f"`{name}`" for name in names)]:
        assert cell in row


@pytest.mark.parametrize(("group", "resource"), sorted(CLUSTER_SCOPED))
def test_every_cluster_scoped_resource_is_documented(group: str, resource: str) -> None:
    assert f"| {shown(group)} | `{resource}` |" in POLICIES_DOC


def test_the_sample_run_is_real(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    [sample] = re.findall(
        r"```console\n\$ taskgrant check -f deploy/examples\n(.*?)\$ echo \$\?\n(\d)\n```", POLICIES_DOC, re.S
    )
    output, code = sample
    monkeypatch.chdir(ROOT)
    assert main(["check", "-f", os.path.join("deploy", "examples")]) == int(code)
    assert capsys.readouterr().out == output
