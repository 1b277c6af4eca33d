"""The pydantic models and crds/taskgrants.yaml describe the same fields with the same constraints."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from taskgrant.domain import constants
from taskgrant.domain.models import (
    TaskGrantApprovalSpec,
    TaskGrantPolicySpec,
    TaskGrantPolicyStatus,
    TaskGrantSpec,
    TaskGrantStatus,
)

CRDS = Path(__file__).parents[2] / "crds"
CRD_PATH = CRDS / "taskgrants.yaml"
CONSTRAINTS = ("type", "format", "pattern", "minLength", "maxLength", "minItems", "maxItems", "enum")


def crd(path: Path = CRD_PATH) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def crd_schema(part: str, path: Path = CRD_PATH) -> dict[str, Any]:
    [version] = crd(path)["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"][part]
    return schema


def normalise_model(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Resolve $refs and Optional[...] unions so a pydantic schema reads like an OpenAPI one."""
    if "$ref" in schema:
        return normalise_model(defs[schema["$ref"].split("/")[-1]], defs)
    if "anyOf" in schema:
        [real] = [option for option in schema["anyOf"] if option.get("type") != "null"]
        return normalise_model(real, defs)
    result = {key: schema[key] for key in CONSTRAINTS if key in schema}
    if "properties" in schema:
        result["type"] = "object"
        result["required"] = sorted(schema.get("required", []))
        result["properties"] = {k: normalise_model(v, defs) for k, v in schema["properties"].items()}
    if "items" in schema:
        result["items"] = normalise_model(schema["items"], defs)
    return result


def normalise_crd(schema: dict[str, Any]) -> dict[str, Any]:
    result = {key: schema[key] for key in CONSTRAINTS if key in schema}
    if result.get("type") == "integer":
        result.pop("format", None)  # int64 is the OpenAPI spelling of Python's int
    if "properties" in schema:
        result["required"] = sorted(schema.get("required", []))
        result["properties"] = {k: normalise_crd(v) for k, v in schema["properties"].items()}
    if "items" in schema:
        result["items"] = normalise_crd(schema["items"])
    return result


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return normalise_model(schema, schema.get("$defs", {}))


@pytest.mark.parametrize(
    ("crd_file", "part", "model"),
    [
        ("taskgrants.yaml", "spec", TaskGrantSpec),
        ("taskgrants.yaml", "status", TaskGrantStatus),
        ("taskgrantpolicies.yaml", "spec", TaskGrantPolicySpec),
        ("taskgrantpolicies.yaml", "status", TaskGrantPolicyStatus),
        ("taskgrantapprovals.yaml", "spec", TaskGrantApprovalSpec),
    ],
)
def test_model_matches_crd(crd_file: str, part: str, model: type[BaseModel]) -> None:
    assert model_schema(model) == normalise_crd(crd_schema(part, CRDS / crd_file))


def test_policy_crd_is_cluster_scoped() -> None:
    spec = crd(CRDS / "taskgrantpolicies.yaml")["spec"]
    assert spec["scope"] == "Cluster"
    assert spec["names"]["plural"] == constants.POLICY_PLURAL
    assert spec["versions"][0]["subresources"] == {"status": {}}


def test_crd_names_match_constants() -> None:
    spec = crd()["spec"]
    assert spec["group"] == constants.GROUP
    assert spec["names"]["kind"] == constants.KIND
    assert spec["names"]["plural"] == constants.PLURAL
    assert spec["names"]["shortNames"] == ["tg"]
    assert spec["names"]["categories"] == ["taskgrant"]
    assert [v["name"] for v in spec["versions"]] == [constants.VERSION]
    assert spec["versions"][0]["subresources"] == {"status": {}}


def test_printer_columns_show_phase_job_expiry_and_age() -> None:
    columns = {c["name"]: c["jsonPath"] for c in crd()["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Job"] == ".spec.job.name"
    assert columns["Expires"] == ".status.expiresAt"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_every_spec_field_is_described() -> None:
    def walk(schema: dict[str, Any], path: str) -> list[str]:
        missing = [] if "description" in schema else [path]
        for name, child in schema.get("properties", {}).items():
            missing += walk(child, f"{path}.{name}")
        if "items" in schema and "properties" in schema["items"]:
            for name, child in schema["items"]["properties"].items():
                missing += walk(child, f"{path}[].{name}")
        return missing

    for path in CRDS.glob("*.yaml"):
        assert walk(crd_schema("spec", path), "spec") == [], path.name


def test_spec_is_immutable_by_cel() -> None:
    rules = [rule["rule"] for rule in crd_schema("spec")["x-kubernetes-validations"]]
    assert "self == oldSelf" in rules
