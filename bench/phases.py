"""The four phases: lifecycles at N concurrently active grants, deadlines, and memory at scale."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import analysis
from bench.client import (
    BATCH,
    COMPLETE,
    CORE,
    GRANTS,
    BenchClient,
    run_all,
)
from bench.procstat import ProcSample
from bench.runtime import BenchTimeout, OperatorProcess, cluster_and_operator
from taskgrant.domain.manifests import (
    SECRET_RULE,
    grant_manifest,
    job_manifest,
    namespace_manifest,
    policy_manifest,
)
from taskgrant.emulator import EmulatedCluster

# Every grant asks for SECRET_RULE, and the one policy allows exactly that much.
BENCH_RULE = {**SECRET_RULE, "requireResourceNames": True}
GRANT = "task"  # every grant (and its Job) has this name, one grant per namespace
TASKGRANTS = ("taskgrant.dev", "v1alpha1", "taskgrants")
# time.time() - time.monotonic(), taken once: turns the grants' wall-clock expiresAt into monotonic time.
WALL_OFFSET = time.time() - time.monotonic()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def namespaces_for(start: int, stop: int) -> list[str]:
    return [f"bench-{i:05d}" for i in range(start, stop)]


@dataclass
class Waited:
    seconds: float
    statuses: dict[str, dict[str, Any]]  # namespace: the grant's last seen status


async def wait_for_phase(
    client: BenchClient,
    namespaces: Collection[str],
    reached: Collection[str],
    timeout: float,
    interval: float = 0.5,
    fatal: Collection[str] = ("Denied",),
) -> Waited:
    """Poll one LIST of every grant until each grant in `namespaces` is in a phase of `reached`."""
    started = time.monotonic()
    wanted = set(namespaces)
    statuses: dict[str, dict[str, Any]] = {}
    while True:
        for item in await client.items(f"{GRANTS}/taskgrants"):
            namespace = item["metadata"]["namespace"]
            if namespace in wanted:
                statuses[namespace] = item.get("status") or {}
        phases = {ns: statuses.get(ns, {}).get("phase") for ns in wanted}
        broken = sorted(ns for ns, phase in phases.items() if phase in fatal)
        if broken:
            status = statuses[broken[0]]
            raise RuntimeError(
                f"{len(broken)} grants ended up {status.get('phase')} ({status.get('reason')}: "
                f"{status.get('message')}), e.g. {broken[0]}/{GRANT}"
            )
        if all(phase in reached for phase in phases.values()):
            return Waited(time.monotonic() - started, statuses)
        if time.monotonic() - started > timeout:
            counts = Counter(str(phase) for phase in phases.values())
            late = sorted(ns for ns, phase in phases.items() if phase not in reached)
            missing = late[:5]
            raise BenchTimeout(
                f"after {timeout:.0f}s, {len(late)} "
                f"of {len(wanted)} grants are not {'/'.join(reached)}: phases {dict(counts)}; "
                f"e.g. {', '.join(f'{ns}/{GRANT}' for ns in missing)}"
            )
        await asyncio.sleep(interval)


def count_phases(cluster: EmulatedCluster) -> Counter[str]:
    """Grants by phase, read inside the emulator without copying (cheap even at 10,000 grants)."""

    def count() -> Counter[str]:
        found: Counter[str] = Counter()
        for key, obj in cluster.emulator._objects.items():
            if (key[0].group, key[0].version, key[0].plural) == TASKGRANTS and not obj.deleted:
                found[str((obj.raw.get("status") or {}).get("phase"))] += 1
        return found

    return cluster.call(count, timeout=60)


async def prepare(client: BenchClient, namespaces: list[str]) -> None:
    await client.create(f"{GRANTS}/taskgrantpolicies", policy_manifest("bench-secrets", rules=[BENCH_RULE]))
    await create_namespaces(client, namespaces)
    await asyncio.sleep(1.0)  # the operator handles the policy's events; then it is idle


async def create_namespaces(client: BenchClient, namespaces: list[str]) -> None:
    await run_all(client.create(f"{CORE}/namespaces", namespace_manifest(ns)) for ns in namespaces)


async def create_grants(client: BenchClient, namespaces: list[str], **spec: Any) -> None:
    path: Callable[[str], str] = lambda ns: f"{GRANTS}/namespaces/{ns}/taskgrants"  # noqa: E731
    await run_all(client.create(path(ns), grant_manifest(ns, GRANT, **spec)) for ns in namespaces)


async def create_jobs(client: BenchClient, namespaces: list[str]) -> None:
    await run_all(create_job(client, ns) for ns in namespaces)


async def create_job(client: BenchClient, ns: str) -> None:
    await client.create(f"{BATCH}/namespaces/{ns}/jobs", job_manifest(ns, GRANT, automount_token=False))


async def finish_job(client: BenchClient, ns: str) -> None:
    await client.patch(f"{BATCH}/namespaces/{ns}/jobs/{GRANT}/status", COMPLETE)


async def finish_jobs(client: BenchClient, namespaces: list[str]) -> None:
    await run_all(client.patch(f"{BATCH}/namespaces/{ns}/jobs/{GRANT}/status", COMPLETE) for ns in namespaces)


def resources(before: ProcSample, after: ProcSample, active: ProcSample | None = None) -> dict[str, Any]:
    result = {
        "cpu_seconds": round(after.cpu_seconds - before.cpu_seconds, 2),
        "peak_rss_mb": round(after.peak_rss_bytes / 2**20, 1),
        "rss_at_start_mb": round(before.rss_bytes / 2**20, 1),
        "rss_at_end_mb": round(after.rss_bytes / 2**20, 1),
    }
    if active is not None:
        result["rss_all_active_mb"] = round(active.rss_bytes / 2**20, 1)
    return result


def timeout_for(n: int) -> float:
    return 60.0 + 0.1 * n


@dataclass
class PhaseResult:
    name: str
    grants: int
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


async def paced(calls: list[Coroutine[Any, Any, Any]], rate: float) -> None:
    """Start one call every 1/rate seconds, however long each takes."""
    tasks = []
    for call in calls:
        tasks.append(asyncio.create_task(call))
        await asyncio.sleep(1.0 / rate)
    await asyncio.gather(*tasks)


async def settle(cluster: EmulatedCluster, quiet: float = 1.5, timeout: float = 120.0) -> float:
    """Wait until the API has served nothing for `quiet` seconds: the operator has caught up."""
    started = time.monotonic()
    count = -1
    while time.monotonic() - started < timeout:
        now = cluster.call(lambda: len(cluster.emulator._requests))
        if now == count:
            break
        count = now
        await asyncio.sleep(quiet)
    return time.monotonic() - started


def poll_interval(n: int) -> float:
    return 0.5 if n <= 200 else 1.0  # a LIST of 1,000 grants is ~3 MB: poll it less often


def _window(
    lines: Mapping[str, analysis.Timeline], namespaces: Collection[str], start: str, end: str
) -> float | None:
    starts = [getattr(lines[ns], start) for ns in namespaces if getattr(lines[ns], start) is not None]
    ends = [getattr(lines[ns], end) for ns in namespaces if getattr(lines[ns], end) is not None]
    return max(ends) - min(starts) if starts and ends else None


async def lifecycle_phase(workdir: Path, n: int, concurrency: int, paced_rate: float) -> PhaseResult:
    """N grants active at once; Jobs start and complete in a burst, and a few at a paced rate.

    1. N grants are created; once all are Pending, N-k Jobs are created at once (activation, burst).
    2. The last k Jobs are created at `paced_rate` per second (activation with N-k..N grants active).
    3. Those k Jobs complete at `paced_rate` per second (revocation with N..N-k grants active).
    4. The other N-k Jobs complete at once (revocation, burst).
    """
    result = PhaseResult(f"lifecycle-{n}", n)
    namespaces = namespaces_for(0, n)
    k = min(100, n // 10) if paced_rate > 0 else 0
    burst, steady = namespaces[: n - k], namespaces[n - k :]
    interval = poll_interval(n)
    steps: dict[str, float] = {}
    with cluster_and_operator(workdir, result.name) as (cluster, operator):
        async with BenchClient(cluster.url, cluster.token, concurrency) as client:
            await prepare(client, namespaces)
            since, before = time.monotonic(), operator.sample()
            active = before

            async def wait(which: list[str], phase: str) -> float:
                return (await wait_for_phase(client, which, [phase], timeout_for(n), interval)).seconds

            try:
                log(f"{result.name}: creating {n} grants")
                await create_grants(client, namespaces)
                steps["all_pending"] = await wait(namespaces, "Pending")
                log(f"{result.name}: all Pending; creating {len(burst)} Jobs at once")
                await create_jobs(client, burst)
                steps["burst_active"] = await wait(burst, "Active")
                await settle(cluster)  # the burst's last events: the paced part starts on an idle operator
                if steady:
                    log(f"{result.name}: creating {k} more Jobs, {paced_rate:g} per second")
                    await paced([create_job(client, ns) for ns in steady], paced_rate)
                    steps["paced_active"] = await wait(namespaces, "Active")
                active = operator.sample()
                await settle(cluster)
                if steady:
                    log(f"{result.name}: all {n} Active; completing {k} Jobs, {paced_rate:g} per second")
                    await paced([finish_job(client, ns) for ns in steady], paced_rate)
                    steps["paced_revoked"] = await wait(steady, "Revoked")
                    await settle(cluster)
                log(f"{result.name}: completing {len(burst)} Jobs at once")
                await finish_jobs(client, burst)
                steps["burst_revoked"] = await wait(namespaces, "Revoked")
                log(f"{result.name}: all Revoked")
            except (BenchTimeout, RuntimeError) as error:
                result.error = str(error)
                log(f"{result.name}: FAILED: {error}")
            steps["settle"] = await settle(cluster)  # the operator's last events, then quiet
            after = operator.sample()
        requests = cluster.requests()
    lines = analysis.timelines(requests, namespaces)

    def of(which: list[str]) -> dict[str, analysis.Timeline]:
        return {ns: lines[ns] for ns in which}

    windows: dict[str, float] = {}
    activation_window = _window(lines, burst, "first_job_create_received", "binding_created")
    revocation_window = _window(lines, burst, "job_finished", "revoked")
    everything = _window(lines, namespaces, "first_job_create_received", "revoked")
    if activation_window and revocation_window:
        windows["activation_window_s"] = activation_window
        windows["revocation_window_s"] = revocation_window
        windows["lifecycles_per_second"] = len(burst) / (activation_window + revocation_window)
    if everything:
        windows["first_job_create_to_last_revocation_s"] = everything
        windows["lifecycles_per_second_incl_paced_and_idle"] = n / everything
    result.data = {
        "paced_grants": k,
        "paced_rate_per_s": paced_rate,
        "activation_latency_s": analysis.Distribution.of(analysis.activation_latencies(of(burst))).__dict__,
        "revocation_latency_s": analysis.Distribution.of(analysis.revocation_latencies(of(burst))).__dict__,
        "paced_activation_latency_s": analysis.Distribution.of(
            analysis.activation_latencies(of(steady))
        ).__dict__,
        "paced_revocation_latency_s": analysis.Distribution.of(
            analysis.revocation_latencies(of(steady))
        ).__dict__,
        "throughput": windows,
        "observed_by_polling_s": steps,
        "requests_per_lifecycle": analysis.request_counts(requests, namespaces, since).as_dict(),
        "operator": resources(before, after, active),
        "incomplete": {
            "not_activated": sorted(ns for ns, line in lines.items() if line.binding_created is None)[:20],
            "not_revoked": sorted(ns for ns, line in lines.items() if line.revoked is None)[:20],
        },
    }
    return result


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def deadline_phase(
    workdir: Path, n: int, duration: str, concurrency: int, paced_rate: float
) -> PhaseResult:
    """N grants with a short `duration` whose Jobs never finish: lateness of the revocation at expiry.

    1. N grants are created; once all are Pending, N-k Jobs are created at once, so their grants
       expire together (within the second their activations took): the scheduler's burst.
    2. Once those are revoked, the last k Jobs are created at `paced_rate` per second, so their
       expiries come at that rate: the lateness of one deadline, as the scheduler sees them in use.
    """
    result = PhaseResult(f"deadline-{n}", n)
    namespaces = namespaces_for(0, n)
    k = min(100, n // 2) if paced_rate > 0 else 0
    burst, steady = namespaces[: n - k], namespaces[n - k :]
    statuses: dict[str, dict[str, Any]] = {}
    with cluster_and_operator(workdir, result.name) as (cluster, operator):
        async with BenchClient(cluster.url, cluster.token, concurrency) as client:
            await prepare(client, namespaces)
            since, before = time.monotonic(), operator.sample()

            async def wait(which: list[str]) -> None:
                waited = await wait_for_phase(client, which, ["Revoked"], timeout_for(n), poll_interval(n))
                statuses.update(waited.statuses)

            try:
                log(f"{result.name}: creating {n} grants with duration {duration}")
                await create_grants(client, namespaces, duration=duration)
                await wait_for_phase(client, namespaces, ["Pending"], timeout_for(n))
                log(f"{result.name}: all Pending; creating {len(burst)} Jobs that never finish, at once")
                await create_jobs(client, burst)
                await wait(burst)
                await settle(cluster)
                if steady:
                    log(f"{result.name}: creating {k} more such Jobs, {paced_rate:g} per second")
                    await paced([create_job(client, ns) for ns in steady], paced_rate)
                    await wait(steady)
                log(f"{result.name}: all Revoked")
            except (BenchTimeout, RuntimeError) as error:
                result.error = str(error)
                log(f"{result.name}: FAILED: {error}")
            await settle(cluster)
            after = operator.sample()
        requests = cluster.requests()
    lines = analysis.timelines(requests, namespaces)

    def lateness(which: list[str]) -> dict[str, Any]:
        expiry = {
            ns: parse_time(statuses[ns]["expiresAt"]) - WALL_OFFSET
            for ns in which
            if ns in statuses
            and statuses[ns].get("expiresAt")
            and statuses[ns].get("reason") == "DeadlineExceeded"
        }
        return analysis.Distribution.of(analysis.deadline_lateness(lines, expiry)).__dict__

    reasons = Counter(str(status.get("reason")) for status in statuses.values())
    result.data = {
        "paced_grants": k,
        "paced_rate_per_s": paced_rate,
        "deadline_lateness_s": lateness(burst),
        "paced_deadline_lateness_s": lateness(steady),
        "revocation_reasons": dict(reasons),
        "requests_per_lifecycle": analysis.request_counts(requests, namespaces, since).as_dict(),
        "operator": resources(before, after),
    }
    return result


MEMORY_BATCH = 200  # grants (with their Jobs) created together in the memory phase


def memory_steps(maximum: int) -> list[int]:
    if maximum >= 10_000:
        steps = [1_000, 2_000, 5_000, 10_000]
        steps = [step for step in steps if step < maximum] + [maximum]
    else:
        steps = [maximum // 10, maximum // 5, maximum // 2, maximum]
    return sorted({step for step in steps if step > 0})


async def memory_phase(workdir: Path, maximum: int, concurrency: int, budget_seconds: float) -> PhaseResult:
    """Active grants in steps up to `maximum`: the operator's RSS at each, and the per-grant slope."""
    result = PhaseResult(f"memory-{maximum}", maximum)
    steps: list[dict[str, Any]] = []
    started = time.monotonic()
    with cluster_and_operator(workdir, result.name) as (cluster, operator):
        async with BenchClient(cluster.url, cluster.token, concurrency) as client:
            await prepare(client, [])
            baseline = operator.sample()
            steps.append(_memory_step(0, 0.0, baseline, baseline))
            created = 0
            for target in memory_steps(maximum):
                step_started = time.monotonic()
                new = namespaces_for(created, target)
                log(f"{result.name}: {created} -> {target} active grants")
                await create_namespaces(client, new)

                async def grant_and_job(ns: str) -> None:
                    await client.create(f"{GRANTS}/namespaces/{ns}/taskgrants", grant_manifest(ns, GRANT))
                    await create_job(client, ns)

                try:
                    # In batches, each Active before the next: the operator's backlog of watch events
                    # stays small, so the step measures what active grants weigh, not a queue's peak.
                    for first in range(0, len(new), MEMORY_BATCH):
                        batch = new[first : first + MEMORY_BATCH]
                        await run_all(grant_and_job(ns) for ns in batch)
                        created += len(batch)
                        await _wait_active(cluster, created, budget_seconds - (time.monotonic() - started))
                except BenchTimeout as error:
                    result.error = f"step {target}: {error}"
                    log(f"{result.name}: STOPPED: {result.error}")
                    break
                seconds = time.monotonic() - step_started
                await asyncio.sleep(3.0)  # settle: the last events, then an idle operator
                steps.append(_memory_step(target, seconds, baseline, operator.sample()))
                log(f"{result.name}: {target} active after {seconds:.0f}s; RSS {steps[-1]['rss_mb']} MB")
    for previous, current in itertools.pairwise(steps):
        delta = current["grants"] - previous["grants"]
        current["slope_bytes_per_grant"] = round(
            (current["rss_mb"] - previous["rss_mb"]) * 2**20 / delta if delta else 0.0
        )
    result.data = {"steps": steps, "total_seconds": round(time.monotonic() - started, 1)}
    return result


def _memory_step(grants: int, seconds: float, baseline: ProcSample, now: ProcSample) -> dict[str, Any]:
    return {
        "grants": grants,
        "seconds_to_all_active": round(seconds, 1),
        "rss_mb": round(now.rss_bytes / 2**20, 1),
        "peak_rss_mb": round(now.peak_rss_bytes / 2**20, 1),
        "cpu_seconds": round(now.cpu_seconds - baseline.cpu_seconds, 1),
    }


async def _wait_active(cluster: EmulatedCluster, total: int, timeout: float) -> None:
    started = time.monotonic()
    while True:
        counts = await asyncio.to_thread(count_phases, cluster)
        if counts.get("Active", 0) >= total:
            return
        if set(counts) - {"Active", "Pending", "None"}:
            raise BenchTimeout(f"grants ended unexpectedly: {dict(counts)}")
        if time.monotonic() - started > timeout:
            raise BenchTimeout(
                f"after {timeout:.0f}s only {counts.get('Active', 0)} of {total} are Active: {dict(counts)}"
            )
        await asyncio.sleep(2.0)


__all__ = ["OperatorProcess", "PhaseResult", "deadline_phase", "lifecycle_phase", "memory_phase"]
