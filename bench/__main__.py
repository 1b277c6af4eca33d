"""`python -m bench`: run the phases, print the tables, write the JSON.

python -m bench                                   # the full default run (make bench)
python -m bench --sizes 20 --memory-grants 200    # a quick one
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kopf

from bench import phases, report


def machine() -> dict[str, Any]:
    meminfo = dict(
        line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line
    )
    models = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": models[0] if models else platform.processor(),
        "memory_total": meminfo.get("MemTotal", "").strip(),
        "python": platform.python_version(),
        "kopf": kopf.__version__ if hasattr(kopf, "__version__") else "?",
        "platform": platform.platform(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        default="100,1000",
        help="concurrently active grants per lifecycle phase, comma-separated (default: 100,1000)",
    )
    parser.add_argument(
        "--deadline-grants", type=int, default=200, help="grants in the deadline phase (0: skip)"
    )
    parser.add_argument(
        "--deadline-duration", default="2s", help="spec.duration of those grants (default: 2s)"
    )
    parser.add_argument(
        "--memory-grants",
        type=int,
        default=10_000,
        help="active grants at the end of the memory run (0: skip)",
    )
    parser.add_argument(
        "--max-grants", type=int, default=None, help="cap every phase's grant count (e.g. on a slow machine)"
    )
    parser.add_argument(
        "--memory-budget",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="stop the memory run after this long, keeping the steps it finished (default: 1800)",
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=10.0,
        help="Jobs per second for the paced parts: N/10 Jobs (at most 100) of each lifecycle phase, "
        "N/2 (at most 100) of the deadline phase (0: none)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="the bench's parallel requests (default: 16)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write the results here (`make bench`: bench/results.json, the run docs/performance.md shows)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="kubeconfigs and operator logs (default: a temp dir)"
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, workdir: Path) -> list[phases.PhaseResult]:
    cap = args.max_grants or sys.maxsize
    sizes = [min(int(size), cap) for size in args.sizes.split(",") if size.strip() and int(size) > 0]
    results: list[phases.PhaseResult] = []
    for size in sizes:
        results.append(await phases.lifecycle_phase(workdir, size, args.concurrency, args.paced_rate))
    if args.deadline_grants:
        n = min(args.deadline_grants, cap)
        results.append(
            await phases.deadline_phase(workdir, n, args.deadline_duration, args.concurrency, args.paced_rate)
        )
    if args.memory_grants:
        n = min(args.memory_grants, cap)
        results.append(await phases.memory_phase(workdir, n, args.concurrency, args.memory_budget))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="taskgrant-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        phases.log(f"operator logs under {workdir}")
        results = asyncio.run(run(args, workdir))
    targets = report.targets(results)
    print()
    print(report.render(results, targets))
    document = {
        "machine": machine(),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "seconds": round(time.monotonic() - started, 1),
        "phases": {r.name: {"grants": r.grants, "error": r.error, **r.data} for r in results},
        "targets": targets,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
        phases.log(f"results written to {args.json}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
