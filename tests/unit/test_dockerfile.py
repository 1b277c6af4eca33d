"""The operator image's Dockerfile and .dockerignore keep their promises (no Docker engine needed).

The Dockerfile is parsed as Docker reads it (comments dropped, continuation lines joined, one
instruction per line, stages split at FROM), and .dockerignore is evaluated with Docker's rules
(the last matching pattern wins, `!` re-includes, a pattern matching a directory covers all below).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

NONROOT = "65532"
ENTRYPOINT = ["taskgrant-operator"]
CMD = ["--log-format", "json", "--liveness", "http://0.0.0.0:8080/healthz"]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} must be in exec (JSON) form: {self.args}"
        return [str(item) for item in value]


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.image} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for item in shlex.split(instruction.args):
                key, _, value = item.partition("=")
                values[key] = value
        return values

    def labels(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("LABEL"):
            for item in shlex.split(instruction.args):
                key, _, value = item.partition("=")
                values[key] = value
        return values


def instructions(text: str) -> list[Instruction]:
    """One instruction per logical line: comment lines dropped, backslash continuations joined."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    result = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
    return result


def stages(text: str) -> list[Stage]:
    found: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            found.append(Stage(words[0], name))
        else:
            assert found or instruction.keyword == "ARG", f"{instruction.keyword} before the first FROM"
            if found:
                found[-1].instructions.append(instruction)
    return found


STAGES = stages(DOCKERFILE)
BUILDER, FINAL = STAGES[0], STAGES[-1]


def runs(stage: Stage) -> str:
    return "\n".join(i.args for i in stage.all("RUN"))


def test_multi_stage_with_a_builder() -> None:
    assert len(STAGES) >= 2
    assert BUILDER.name == "builder"
    assert re.search(r"\bpip wheel\b.*--wheel-dir /wheels \.", runs(BUILDER)), "the builder builds the wheels"


def test_base_images_are_slim_python_pinned_by_tag() -> None:
    for stage in STAGES:
        repository, _, tag = stage.image.partition(":")
        assert repository in ("python", "docker.io/library/python"), stage.image
        assert re.fullmatch(r"3\.(11|12)(\.\d+)?-slim(-\w+)?", tag), f"{stage.image}: pin a slim tag"
    assert len({stage.image for stage in STAGES}) == 1, "wheels must be built for the runtime's Python"
    requires = PYPROJECT["project"]["requires-python"]
    assert requires == ">=3.11"


def test_build_context_is_only_what_the_wheel_needs() -> None:
    copies = [i.args for i in BUILDER.all("COPY")]
    assert copies == ["pyproject.toml README.md ./", "operator/ operator/"]


def test_runtime_installs_only_the_built_wheels() -> None:
    install = runs(FINAL)
    assert re.search(r"--mount=type=bind,from=builder,source=/wheels", install)
    assert re.search(r"pip install --no-index --find-links=/wheels\b.* taskgrant-operator\b", install)
    assert not FINAL.all("COPY") and not FINAL.all("ADD"), "no source or wheels are copied into the image"


def test_no_extras_editable_installs_or_compilers_anywhere() -> None:
    every_run = "\n".join(runs(stage) for stage in STAGES)
    assert "[test]" not in every_run and "[demo]" not in every_run
    assert not re.search(r"pip install\b.*(\s-e\s|--editable)", every_run)
    assert not re.search(r"\b(apt-get|apt|apk)\b", every_run), "slim base and binary wheels need no packages"
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make)\b", every_run)


def test_runs_as_non_root_65532() -> None:
    user = FINAL.last("USER").args
    assert user in (NONROOT, f"{NONROOT}:{NONROOT}"), user
    keywords = [i.keyword for i in FINAL.instructions]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[last_user:], "nothing runs as root after USER"
    assert re.search(rf"useradd\b.*--uid {NONROOT} --gid {NONROOT}\b", runs(FINAL))
    assert re.search(r"useradd\b.*--no-log-init", runs(FINAL)), "a high uid must not add a huge lastlog"
    assert re.search(rf"groupadd\b.*--gid {NONROOT}\b", runs(FINAL))


def test_entrypoint_and_default_arguments() -> None:
    assert FINAL.last("ENTRYPOINT").exec_form() == ENTRYPOINT
    assert FINAL.last("CMD").exec_form() == CMD
    assert PYPROJECT["project"]["scripts"]["taskgrant-operator"] == "taskgrant.cli.operator:main"
    assert "8080" in FINAL.last("EXPOSE").args.split()


def test_python_environment() -> None:
    env = FINAL.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "HOME" not in env, "the operator writes no files; HOME is not needed"


def test_oci_labels() -> None:
    labels = FINAL.labels()
    for key in ("title", "description", "licenses", "version", "revision", "source"):
        assert f"org.opencontainers.image.{key}" in labels
    assert labels["org.opencontainers.image.title"] == PYPROJECT["project"]["name"]
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert labels["org.opencontainers.image.description"] == PYPROJECT["project"]["description"]
    version_arg = next(i.args for i in FINAL.all("ARG") if i.args.startswith("VERSION="))
    assert version_arg == f"VERSION={PYPROJECT['project']['version']}"


# .dockerignore, evaluated the way Docker does (moby/patternmatcher).


def ignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line[1:].strip() if include else line
        pattern = pattern.strip("/")
        rules.append((include, re.compile(glob_regex(pattern))))
    return rules


def glob_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def excluded(path: str) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]  # the path and its parents
    verdict = False
    for include, regex in ignore_rules(DOCKERIGNORE):
        if any(regex.fullmatch(candidate) for candidate in candidates):
            verdict = not include
    return verdict


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        ".ci-venv/bin/python",
        "tests/unit/test_dockerfile.py",
        "tests/e2e/conftest.py",
        "operator/taskgrant/cli/__pycache__/operator.cpython-311.pyc",
        "__pycache__/x.pyc",
        "operator/taskgrant_operator.egg-info/PKG-INFO",
        ".pytest-kind/pytest-kind/kubeconfig",
        "charts/taskgrant-operator/values.yaml",
        "docs/security.md",
        "Dockerfile",
    ],
)
def test_dockerignore_excludes(path: str) -> None:
    assert excluded(path)


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "README.md", "operator/taskgrant/cli/operator.py", "operator/taskgrant/py.typed"],
)
def test_dockerignore_keeps_what_the_build_copies(path: str) -> None:
    assert (ROOT / path).exists()
    assert not excluded(path)


def test_every_package_file_reaches_the_build() -> None:
    for path in (ROOT / "operator" / "taskgrant").iterdir():
        if path.is_file():
            assert not excluded(path.relative_to(ROOT).as_posix()), path


def test_dockerignore_names_the_sensitive_paths() -> None:
    lines = {line.strip() for line in DOCKERIGNORE.splitlines()}
    assert {".git", ".venv", "tests", "**/__pycache__"} <= lines
