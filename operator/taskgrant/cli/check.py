"""The `taskgrant` console script: `taskgrant check` gives the operator's admission verdict offline.

It reads TaskGrant, TaskGrantPolicy and Namespace manifests from files and decides each grant with
the operator's own `parse_policies` and `admission_verdict`, so a GitOps pipeline sees the verdict
the cluster will give, without a cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from taskgrant.domain import constants
from taskgrant.domain.models import format_duration
from taskgrant.domain.policy import Admission, InvalidPolicy, admission_verdict, parse_policies

MANIFEST_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
STDIN = "-"
TASKGRANT = (constants.API_VERSION, constants.KIND)
TASKGRANT_POLICY = (constants.API_VERSION, "TaskGrantPolicy")
NAMESPACE = ("v1", "Namespace")

EXIT_ALLOWED, EXIT_DENIED, EXIT_ERROR = 0, 1, 2


class UnreadableInput(Exception):
    """A file that cannot be read or parsed: nothing can be vouched for, so the check fails."""


@dataclass
class Manifests:
    """The objects the check uses, keyed as the API server would key them (a later copy replaces)."""

    grants: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    policies: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    namespace_labels: dict[str, Mapping[str, str]] = field(default_factory=dict)
    ignored: int = 0


@dataclass(frozen=True)
class Result:
    namespace: str
    name: str
    admission: Admission


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _files(path: str) -> list[Path]:
    root = Path(path)
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())
    return [root]


def _parse(source: str, text: str) -> list[Any]:
    try:
        # PyYAML refuses tabs, which JSON allows, so .json files get the JSON parser.
        return [json.loads(text)] if source.endswith(".json") else list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        raise UnreadableInput(f"{source}:{where} YAML syntax error: {error.problem}") from error
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise UnreadableInput(f"{source}: {error}") from error


def read_documents(paths: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """(source, document) for each document of each path, in order; "-" is stdin."""
    for path in paths:
        if path == STDIN:
            yield from (
                (f"<stdin> document {i}", doc) for i, doc in enumerate(_parse("<stdin>", sys.stdin.read()), 1)
            )
            continue
        for file in _files(path):
            try:
                text = file.read_text(encoding="utf-8")
            except OSError as error:
                raise UnreadableInput(f"{file}: {error.strerror}") from error
            except UnicodeDecodeError as error:
                raise UnreadableInput(f"{file}: not UTF-8 text ({error.reason})") from error
            yield from ((f"{file} document {i}", doc) for i, doc in enumerate(_parse(str(file), text), 1))


def _objects(source: str, document: Any) -> Iterator[tuple[str, Any]]:
    """The objects of one document, with `kind: List` unpacked as kubectl does; empty documents are none."""
    if isinstance(document, Mapping) and document.get("kind") == "List":
        for item in document.get("items") or []:
            yield from _objects(source, item)
    elif document is not None:
        yield source, document


def collect(documents: Iterator[tuple[str, Any]], default_namespace: str) -> Manifests:
    manifests = Manifests()
    for source, obj in (o for document in documents for o in _objects(*document)):
        if not isinstance(obj, Mapping):
            _warn(f"{source}: not a Kubernetes object; ignored")
            manifests.ignored += 1
            continue
        kind = (obj.get("apiVersion"), obj.get("kind"))
        if kind not in (TASKGRANT, TASKGRANT_POLICY, NAMESPACE):
            manifests.ignored += 1
            continue
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        name = meta.get("name") if isinstance(meta, Mapping) else None
        if not isinstance(name, str) or not name or not isinstance(spec, Mapping):
            _warn(f"{source}: {kind[1]} without metadata.name or with a malformed spec; ignored")
            manifests.ignored += 1
            continue
        if kind == TASKGRANT:
            key = (meta.get("namespace") or default_namespace, name)
            if key in manifests.grants:
                _warn(f"{source}: TaskGrant {key[0]}/{name} is given again; this copy is used")
            manifests.grants[key] = obj
        elif kind == TASKGRANT_POLICY:
            if name in manifests.policies:
                _warn(f"{source}: TaskGrantPolicy {name} is given again; this copy is used")
            manifests.policies[name] = obj
        else:
            manifests.namespace_labels[name] = meta.get("labels") or {}
    return manifests


def evaluate_all(manifests: Manifests) -> tuple[list[Result], list[InvalidPolicy]]:
    policies, invalid = parse_policies(manifests.policies.values())
    results = [
        Result(
            namespace,
            name,
            admission_verdict(namespace, name, grant.get("spec") or {}, policies, manifests.namespace_labels),
        )
        for (namespace, name), grant in manifests.grants.items()
    ]
    return results, invalid


def _duration(admission: Admission) -> str | None:
    return None if admission.max_duration is None else format_duration(admission.max_duration)


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def render_text(results: Sequence[Result], manifests: Manifests) -> str:
    lines = []
    for result in results:
        admission = result.admission
        if admission.allowed:
            duration = _duration(admission)
            limit = f" (maxDuration {duration})" if duration else ""
            lines.append(f"{result.namespace}/{result.name}: ALLOWED by policy {admission.policy}{limit}")
        else:
            lines.append(f"{result.namespace}/{result.name}: DENIED ({admission.reason})")
            lines += [f"  {reason}" for reason in admission.reasons]
    allowed = sum(result.admission.allowed for result in results)
    lines.append(
        f"{_count(len(results), 'grant')}: {allowed} allowed, {len(results) - allowed} denied "
        f"({_count(len(manifests.policies), 'policy', 'policies')}, "
        f"{_count(len(manifests.namespace_labels), 'namespace')} read; "
        f"{_count(manifests.ignored, 'other document')} ignored)"
    )
    return "\n".join(lines)


def render_json(results: Sequence[Result], manifests: Manifests, invalid: Sequence[InvalidPolicy]) -> str:
    grants = [
        {
            "namespace": result.namespace,
            "name": result.name,
            "allowed": result.admission.allowed,
            "reason": result.admission.reason,
            "message": result.admission.message,
            "policy": result.admission.policy,
            "maxDuration": _duration(result.admission),
            "reasons": list(result.admission.reasons),
        }
        for result in results
    ]
    allowed = sum(result.admission.allowed for result in results)
    return json.dumps(
        {
            "grants": grants,
            "allowed": allowed,
            "denied": len(results) - allowed,
            "ignoredDocuments": manifests.ignored,
            "invalidPolicies": [{"name": policy.name, "error": policy.error} for policy in invalid],
        },
        indent=2,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskgrant", description="TaskGrant tools that need no cluster.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="give each grant the verdict the operator would give it at admission",
        description="Evaluate TaskGrants against TaskGrantPolicies with the operator's own code. "
        "Exit status: 0 all allowed, 1 any denied, 2 unreadable input or no TaskGrant.",
    )
    check.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="PATH",
        help="a manifest file, a directory (*.yaml, *.yml, *.json, recursively) or - for stdin; repeatable",
    )
    check.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format")
    check.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace of grants that name none, as with kubectl apply (default: default)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse exits on --help and usage errors; main() returns instead
        return int(stop.code or 0)
    try:
        manifests = collect(read_documents(args.filename), args.namespace)
    except UnreadableInput as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    if not manifests.grants:
        print(
            f"error: no TaskGrant ({constants.API_VERSION}) found in {', '.join(args.filename)}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    results, invalid = evaluate_all(manifests)
    for policy in invalid:  # the operator logs the same and, like here, lets the policy allow nothing
        _warn(f"ignoring invalid TaskGrantPolicy {policy.name}: {policy.error}")
    print(
        render_json(results, manifests, invalid) if args.output == "json" else render_text(results, manifests)
    )
    return EXIT_ALLOWED if all(result.admission.allowed for result in results) else EXIT_DENIED
