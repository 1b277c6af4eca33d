"""The `taskgrant-operator` console script: run the operator, or the demo on an emulated API."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import sys
from collections.abc import Sequence

import kopf

from taskgrant.controller import metrics
from taskgrant.controller.reconciler import Config
from taskgrant.domain import constants
from taskgrant.domain.models import parse_duration
from taskgrant.k8s.client import KubeApi


def _duration(text: str) -> datetime.timedelta:
    try:
        value = parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    if not isinstance(value, datetime.timedelta) or value <= datetime.timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskgrant-operator",
        description="Kubernetes operator for TaskGrants: RBAC that lives exactly as long as its Job.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run", "demo"],
        default="run",
        help="run: run the operator (default); demo: show one grant's whole life on an in-process "
        "API emulator, no cluster needed",
    )
    add_run_arguments(parser)
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NAME",
        help="serve TaskGrants in this namespace only (repeatable); default: all namespaces",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve every namespace (default)")
    parser.add_argument(
        "--max-duration",
        type=_duration,
        metavar="DURATION",
        default=datetime.timedelta(seconds=constants.DEFAULT_MAX_DURATION_SECONDS),
        help="no grant lives longer than this after activation, whatever it asks (default: 1h)",
    )
    parser.add_argument(
        "--kubeconfig", metavar="PATH", help="kubeconfig file (default: in-cluster, then KUBECONFIG)"
    )
    parser.add_argument("--log-format", choices=["plain", "full", "json"], default="full", help="log format")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve Prometheus metrics on this port at /metrics (default: 0, off)",
    )
    parser.add_argument(
        "--watch-inactivity-timeout",
        type=float,
        default=70.0,
        metavar="SECONDS",
        help="reopen a watch-stream that delivered nothing for this long (default: 70)",
    )
    parser.add_argument(
        "--liveness", metavar="URL", help="serve kopf's liveness probe here, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument(
        "--webhook-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve the admission webhook over HTTPS on this port, at /<handler id> (default: 0, off)",
    )
    parser.add_argument(
        "--webhook-cert-dir",
        metavar="DIR",
        help="the webhook's certificate: DIR/tls.crt and DIR/tls.key, re-read when renewed "
        "(default: a self-signed one for localhost, which needs the certbuilder package)",
    )


def run(args: argparse.Namespace) -> None:
    log_format = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}
    kopf.configure(verbose=args.verbose, log_format=log_format[args.log_format])
    if not args.verbose:
        # kopf logs "Handler ... succeeded" for every watch event; the operator logs its decisions.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import taskgrant.controller.handlers  # noqa: F401  # registers the handlers with kopf

    config = Config(
        max_duration=args.max_duration,
        namespaces=tuple(args.namespace),
        watch_inactivity_timeout=args.watch_inactivity_timeout,
        webhook_port=args.webhook_port,
        webhook_cert_dir=args.webhook_cert_dir,
    )
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    api = KubeApi.from_environment(
        args.kubeconfig, observe=metrics.count_response
    )  # kopf logs in with the same credentials
    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=True,  # one replica, no peering: the chart runs it with strategy Recreate
            liveness_endpoint=args.liveness,
            memo=kopf.Memo(config=config, api=api),
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from taskgrant.cli.demo import main as demo_main

        sys.exit(demo_main())
    run(args)
