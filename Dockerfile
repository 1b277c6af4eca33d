# The taskgrant-operator image:  docker build -t taskgrant-operator .
#
# Two stages. The builder makes wheels: the project's own (from pyproject.toml, README.md and
# operator/, all that .dockerignore lets in) and those of its runtime dependencies (pyproject's
# [project] dependencies and theirs; never the test or demo extras). The runtime stage
# installs only those wheels, offline, from a build-time mount, so neither the wheels nor any
# build tool end up in the image. It runs as uid/gid 65532 and writes nothing at runtime, so a
# read-only root filesystem works (the chart also mounts an emptyDir at /tmp).
# Needs BuildKit (the default builder of Docker Engine 23 and later) for RUN --mount.

FROM python:3.11.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# Every runtime dependency has a binary wheel for this Python, so nothing is compiled here.
RUN python -m pip wheel --wheel-dir /wheels .


FROM python:3.11.11-slim-bookworm

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="taskgrant-operator" \
      org.opencontainers.image.description="Task-scoped Kubernetes access: RBAC that lives exactly as long as its Job." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.11-slim-bookworm"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Only the built wheels, no index: the project and its runtime dependencies, nothing else. The
# bytecode is compiled now, as root, because the running operator cannot (and will not) write it.
# The user gets a passwd entry (for tools that look the uid up); --no-log-init keeps a sparse
# /var/log/lastlog for a high uid out of the layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels --compile taskgrant-operator \
    && groupadd --gid 65532 nonroot \
    && useradd --no-log-init --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin nonroot

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 65532:65532
WORKDIR /
# kopf's liveness endpoint (the default CMD serves it here).
EXPOSE 8080

ENTRYPOINT ["taskgrant-operator"]
CMD ["--log-format", "json", "--liveness", "http://0.0.0.0:8080/healthz"]
