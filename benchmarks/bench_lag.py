"""Lag from an index update to every destination committed, with the real Dagster daemon.

Starts an embedded PostgreSQL (the Dagster instance, via dagster-postgres and the project's
``dagster.yaml`` template; the PostgreSQL destination, the TimescaleDB fallback in the same
database under ``hist_`` schemas, the quarantine and the token vault) and a private
``clickhouse-server``, writes a pipeline configuration with three nodes' ``cdc_raw``
directories, ``config/quality.yaml`` and ``config/masking.yaml`` (random keys) and
``sensor: {interval_seconds: 1, running_by_default: true}``, then runs
``dagster-daemon run -w workspace.yaml`` as a subprocess (sensors, run queue, default run
launcher: one process per run).

The shop workload is then written at a steady rate: every --interval seconds, --rate
mutations go to each node (replication factor 3) and each node syncs, so every ``_cdc.idx``
offset advances. Each index update (node, segment, offset, time) is recorded. Its lag is the
time from the update to the first ``cdc/loaded`` materialization of the segment with
``covered_to`` at or beyond the offset (the event's timestamp): the ledger asset materializes
only after every destination load of the run, so that is "every destination committed".
After a warm-up (the first range of each node, which also creates the tables), updates are
measured for --duration seconds; then writing stops and the benchmark waits for the ledger
to cover everything (or --drain seconds).

Where the time goes, per run, from the run's event log and the sensor's ticks: waiting for the
previous run of the same segment (the sensor keeps one run per segment), waiting for a tick,
the tick (evaluation and run submission), the run queue, starting the run process, each
step, and the rest of the run.

    python benchmarks/bench_lag.py --record                    # 3 minutes
    python benchmarks/bench_lag.py --duration 600 --rate 100
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # cdc_platform_tests.servers

from dagster_home import create_database, embedded_postgres, open_instance, write_dagster_home
from docs_section import DOC, replace_section

from cdc_platform.cdc_raw import partition_key
from cdc_platform.commitlog.cdc_index import read_cdc_index
from cdc_platform.commitlog.descriptor import parse_segment_name
from cdc_platform.demo import destinations, write_shop_pipeline
from cdc_platform.workload import DEFAULT_NODES, NodeWriter, ShopWorkload
from cdc_platform_tests.servers import clickhouse_server

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
TARGET_P99 = 5.0
MASK_KEY_VARIABLES = ("CDC_MASK_KEY_2026", "CDC_MASK_KEY_2025", "CDC_VAULT_KEY_2026")
STEPS = (
    "cdc__decoded",
    "cdc__validated",
    "cdc__masked",
    "load_postgres",
    "load_timescaledb",
    "load_clickhouse",
    "cdc__loaded",
)


# --------------------------------------------------------------------------------------------
# The platform: configuration, instance, daemon


def write_pipeline(root: Path, sensor_interval: int) -> Path:
    return write_shop_pipeline(
        root,
        destinations("CDC_BENCH_PG_URL", "CDC_BENCH_PG_URL", "CDC_BENCH_CH_URL", "lag_"),
        config_dir=REPO / "config",
        retirement={"mode": "archive", "archive": "archive"},
        sensor={"interval_seconds": sensor_interval, "running_by_default": True},
    )


def write_workspace(root: Path) -> Path:
    path = root / "workspace.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "cdc_platform.definitions",
                            "working_directory": str(REPO),
                        }
                    }
                ]
            },
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def daemon_process(workspace: Path, env: dict[str, str], log: Path) -> Any:
    """``dagster-daemon run`` in a session of its own; it and every process it started end on exit."""
    import psutil

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(workspace)],
            cwd=workspace.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        try:
            family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = [proc.pid]
        # The daemon stops its code server on SIGTERM; run workers are its descendants too.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in family[1:]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p = psutil.Process(pid)
                p.terminate()
                try:
                    p.wait(timeout=10)
                except psutil.TimeoutExpired:
                    p.kill()


# --------------------------------------------------------------------------------------------
# Index updates and ledger events


@dataclass(frozen=True)
class IdxUpdate:
    key: str
    offset: int
    completed: bool
    at: float
    measured: bool  # False during the warm-up


@dataclass(frozen=True)
class LedgerEvent:
    key: str
    covered_to: int
    completed: bool
    timestamp: float
    run_id: str
    storage_id: int


class IndexWatcher:
    """Records each change of a node's index files (offset or COMPLETED) after a write."""

    def __init__(self, node: str, writer: NodeWriter) -> None:
        self.node = node
        self.writer = writer
        self.last: dict[Path, tuple[int, bool]] = {}

    def poll(self, at: float, measured: bool) -> list[IdxUpdate]:
        out = []
        for path in self.writer.paths:
            if self.last.get(path, (0, False))[1]:
                continue  # COMPLETED: it never changes again (and may be archived)
            name = parse_segment_name(path.name)
            idx = read_cdc_index(path.with_name(name.cdc_index_name))
            if idx is None:
                continue
            before = self.last.get(path, (0, False))
            self.last[path] = (idx.offset, idx.completed)
            # Only new durable data counts: COMPLETED alone adds nothing to load.
            if idx.offset > before[0]:
                out.append(
                    IdxUpdate(
                        partition_key(self.node, name.segment_id), idx.offset, idx.completed, at, measured
                    )
                )
        return out


def fetch_ledger(instance: Any, after: int | None) -> list[LedgerEvent]:
    from dagster import AssetRecordsFilter

    from cdc_platform.defs.ledger import LEDGER_KEY

    out: list[LedgerEvent] = []
    cursor = None
    while True:
        result = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=LEDGER_KEY, after_storage_id=after),
            limit=1000,
            cursor=cursor,
            ascending=True,
        )
        for r in result.records:
            mat = r.asset_materialization
            if mat is None or mat.partition is None:
                continue
            meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
            out.append(
                LedgerEvent(
                    mat.partition,
                    int(meta.get("covered_to", 0)),
                    bool(meta.get("completed")),
                    r.timestamp,
                    r.run_id,
                    r.storage_id,
                )
            )
        if not result.has_more:
            return out
        cursor = result.cursor


class Ledger:
    """The ledger events seen so far, and the lag of each index update."""

    def __init__(self) -> None:
        self.events: dict[str, list[LedgerEvent]] = defaultdict(list)
        self.last_id: int | None = None

    def refresh(self, instance: Any) -> None:
        for e in fetch_ledger(instance, self.last_id):
            self.events[e.key].append(e)
            self.last_id = e.storage_id if self.last_id is None else max(self.last_id, e.storage_id)

    def covering(self, u: IdxUpdate) -> LedgerEvent | None:
        for e in self.events.get(u.key, []):  # storage order
            if e.covered_to >= u.offset:
                return e
        return None


# --------------------------------------------------------------------------------------------
# Where the time goes, per run


@dataclass
class RunTimeline:
    run_id: str
    key: str
    start: int
    end: int
    status: str
    created: float
    events: dict[str, float] = field(default_factory=dict)  # first timestamp of each event type
    steps: dict[str, tuple[float, float]] = field(default_factory=dict)
    tick_at: float | None = None
    tick_end: float | None = None
    finished: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"


def run_timelines(instance: Any, since: float) -> list[RunTimeline]:
    from dagster import DagsterEventType, RunsFilter

    from cdc_platform.defs.ledger import PARTITION_TAG, REPLICATE_JOB

    records = instance.get_run_records(
        RunsFilter(job_name=REPLICATE_JOB, created_after=dt.datetime.fromtimestamp(since, tz=dt.UTC))
    )
    out = []
    for r in records:
        run = r.dagster_run
        start, _, end = run.tags.get("cdc/range", "0--1").partition("-")
        t = RunTimeline(
            run.run_id,
            run.tags.get(PARTITION_TAG, ""),
            int(start),
            int(end),
            run.status.value,
            r.create_timestamp.timestamp(),
        )
        for entry in instance.all_logs(run.run_id):
            ev = entry.dagster_event
            if ev is None:
                continue
            kind = ev.event_type
            t.events.setdefault(kind.name, entry.timestamp)
            if kind == DagsterEventType.STEP_START and entry.step_key:
                t.steps[entry.step_key] = (entry.timestamp, entry.timestamp)
            elif kind == DagsterEventType.STEP_SUCCESS and entry.step_key in t.steps:
                t.steps[entry.step_key] = (t.steps[entry.step_key][0], entry.timestamp)
            if kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
                t.finished = entry.timestamp
        out.append(t)
    return sorted(out, key=lambda t: t.created)


def attach_ticks(instance: Any, timelines: list[RunTimeline]) -> dict[str, list[float]]:
    """Sets each run's tick; returns the tick start times per sensor."""
    from dagster._core.scheduler.instigation import InstigatorType

    by_run = {t.run_id: t for t in timelines}
    starts: dict[str, list[float]] = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=100_000)
        starts[state.instigator_name] = sorted(t.timestamp for t in ticks)
        for tick in ticks:
            for run_id in tick.run_ids:
                if run_id in by_run:
                    by_run[run_id].tick_at = tick.timestamp
                    by_run[run_id].tick_end = tick.end_timestamp
    return starts


COMPONENTS = (
    ("previous run of the segment", "the sensor keeps one run per segment: new data waits for it"),
    ("wait for a tick", "after that, until the next sensor tick starts"),
    ("tick", "tick start → run created (evaluation of the node's sensor, run submission)"),
    ("run queue", "RUN_ENQUEUED → RUN_STARTING (QueuedRunCoordinator dequeue)"),
    ("run process start", "RUN_STARTING → RUN_START (new process: imports, code location, resources)"),
    *((f"step {s}", "STEP_START → STEP_SUCCESS") for s in STEPS),
    ("rest of the run", "RUN_START → ledger event, minus the steps (step setup, IO, pool slot waits)"),
    ("total", "oldest index update in the range → ledger event"),
)


def breakdown(
    timeline: RunTimeline, updates: list[IdxUpdate], ledger: Ledger, previous_end: float | None
) -> dict[str, float] | None:
    """Seconds per component for the oldest index update a run carries (None: incomplete data)."""
    mine = [u for u in updates if u.key == timeline.key and timeline.start < u.offset <= timeline.end]
    ledger_event = next((e for e in ledger.events.get(timeline.key, []) if e.run_id == timeline.run_id), None)
    ev = timeline.events
    needed = ("RUN_ENQUEUED", "RUN_STARTING", "RUN_START")
    if not mine or ledger_event is None or timeline.tick_at is None or any(k not in ev for k in needed):
        return None
    oldest = min(u.at for u in mine)
    blocked_until = previous_end if previous_end is not None and previous_end > oldest else oldest
    out = {
        "previous run of the segment": blocked_until - oldest,
        "wait for a tick": timeline.tick_at - blocked_until,
        "tick": timeline.created - timeline.tick_at,
        "run queue": ev["RUN_STARTING"] - ev["RUN_ENQUEUED"],
        "run process start": ev["RUN_START"] - ev["RUN_STARTING"],
    }
    step_total = 0.0
    for s in STEPS:
        a, b = timeline.steps.get(s, (0.0, 0.0))
        out[f"step {s}"] = b - a
        step_total += b - a
    out["rest of the run"] = ledger_event.timestamp - ev["RUN_START"] - step_total
    out["total"] = ledger_event.timestamp - oldest
    return out


# --------------------------------------------------------------------------------------------
# Figures


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


@dataclass
class Outcome:
    updates: int
    covered: int
    lags: list[float]
    warmup_lags: list[float]
    runs: dict[str, int]
    components: dict[str, list[float]]
    samples: list[tuple[RunTimeline, dict[str, float]]]
    tick_gaps: list[float]
    per_run_updates: list[int]


def summarize(
    updates: list[IdxUpdate],
    ledger: Ledger,
    timelines: list[RunTimeline],
    tick_starts: dict[str, list[float]],
) -> Outcome:
    lags, warmup = [], []
    covered = 0
    measured = [u for u in updates if u.measured]
    for u in updates:
        e = ledger.covering(u)
        if e is None:
            continue
        if u.measured:
            covered += 1
            lags.append(e.timestamp - u.at)
        else:
            warmup.append(e.timestamp - u.at)
    runs: dict[str, int] = defaultdict(int)
    for t in timelines:
        runs[t.status] += 1
    components: dict[str, list[float]] = defaultdict(list)
    samples = []
    previous: dict[str, float] = {}
    first_measured = min((u.at for u in measured), default=0.0)
    per_run_updates = []
    for t in timelines:
        b = breakdown(t, updates, ledger, previous.get(t.key))
        if t.finished is not None:
            previous[t.key] = max(previous.get(t.key, 0.0), t.finished)
        if b is None or t.created < first_measured:
            continue
        for name, seconds in b.items():
            components[name].append(seconds)
        samples.append((t, b))
        per_run_updates.append(len({u.at for u in updates if u.key == t.key and t.start < u.offset <= t.end}))
    gaps = [b - a for starts in tick_starts.values() for a, b in itertools.pairwise(starts)]
    return Outcome(
        len(measured), covered, lags, warmup, dict(runs), components, samples, gaps, per_run_updates
    )


def lag_table(o: Outcome) -> list[str]:
    met = bool(o.lags) and o.covered == o.updates and percentile(o.lags, 0.99) <= TARGET_P99
    lines = [
        "| index updates | covered | p50 s | p90 s | p99 s | max s | p99 ≤ 5 s |",
        "|---|---|---|---|---|---|---|",
    ]
    if not o.lags:
        lines.append(f"| {o.updates:,} | 0 | – | – | – | – | no |")
        return lines
    lines.append(
        f"| {o.updates:,} | {o.covered:,} | {percentile(o.lags, 0.5):.2f} | {percentile(o.lags, 0.9):.2f} | "
        f"{percentile(o.lags, 0.99):.2f} | {max(o.lags):.2f} | {'yes' if met else 'no'} |"
    )
    return lines


def component_table(o: Outcome) -> list[str]:
    lines = [
        f"| component ({len(o.samples)} runs) | median s | p90 s | max s | what |",
        "|---|---|---|---|---|",
    ]
    for name, what in COMPONENTS:
        values = o.components.get(name, [])
        if values:
            lines.append(
                f"| {name} | {statistics.median(values):.2f} | {percentile(values, 0.9):.2f} | "
                f"{max(values):.2f} | {what} |"
            )
    return lines


def sample_table(o: Outcome, count: int = 5) -> list[str]:
    if not o.samples:
        return []
    picks = [o.samples[round(i * (len(o.samples) - 1) / max(1, count - 1))] for i in range(count)]
    short = {
        "previous run of the segment": "prev run",
        "wait for a tick": "tick wait",
        "tick": "tick",
        "run queue": "queue",
        "run process start": "process start",
        **{f"step {s}": s.replace("cdc__", "") for s in STEPS},
        "rest of the run": "rest",
        "total": "total",
    }
    lines = [
        "| run | segment | range | " + " | ".join(short[n] for n, _ in COMPONENTS) + " |",
        "|" + "---|" * (3 + len(COMPONENTS)),
    ]
    shown: set[str] = set()
    for t, b in picks:
        if t.run_id in shown:
            continue
        shown.add(t.run_id)
        lines.append(
            f"| {t.run_id[:8]} | {t.key} | {t.start}–{t.end} | "
            + " | ".join(f"{b[n]:.2f}" for n, _ in COMPONENTS)
            + " |"
        )
    return lines


def report(o: Outcome) -> str:
    gaps = o.tick_gaps
    tick_line = (
        f"Ticks per sensor: median {statistics.median(gaps):.2f} s apart (p90 {percentile(gaps, 0.9):.2f} s, "
        f"min {min(gaps):.2f} s)."
        if gaps
        else "No sensor ticks recorded."
    )
    runs = ", ".join(f"{n} {s.lower()}" for s, n in sorted(o.runs.items()))
    warm = (
        f"Warm-up (first range of each node, tables created): {len(o.warmup_lags)} updates, max "
        f"{max(o.warmup_lags):.2f} s (not in the figures)."
        if o.warmup_lags
        else ""
    )
    carried = (
        f"Index updates per run: median {statistics.median(o.per_run_updates):.0f}, max {max(o.per_run_updates)}."
        if o.per_run_updates
        else ""
    )
    return "\n".join(
        [
            *lag_table(o),
            "",
            f"Runs of `replicate`: {runs}. {tick_line} {carried} {warm}".strip(),
            "",
            "Where the time goes, per run, for the oldest index update it carries:",
            "",
            *component_table(o),
            "",
            "Some runs (seconds):",
            "",
            *sample_table(o),
        ]
    )


def record(text: str, args: argparse.Namespace, overrides: dict[str, Any], command: str) -> None:
    """Writes the section "Lag (daemon)" of docs/benchmarks.md; its "### Findings" stay."""
    path = DOC
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    changed = (
        "; instance settings changed from the template: "
        + ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in overrides.items())
        if overrides
        else "; the template unchanged except the socket directory (`postgres_db.params.host`)"
    )
    lines = [
        "## Lag (daemon)",
        "",
        f"Command: `{command}`",
        f"Machine: {machine}; measured {dt.date.today().isoformat()}.",
        "",
        f"Target: p99 ≤ {TARGET_P99:g} s from an index update to every destination committed. "
        "`dagster-daemon run` with the code location `cdc_platform.definitions`, instance in the "
        "embedded PostgreSQL from `cdc_platform/templates/dagster.yaml` (dagster-postgres, "
        "`QueuedRunCoordinator` dequeuing every second with the limits of `concurrency.runs`, default run launcher: one process per run)"
        f"{changed}. Pipeline: three nodes, destinations PostgreSQL, TimescaleDB fallback (same "
        "server) and clickhouse-server 18.16, `config/quality.yaml` and `config/masking.yaml`, "
        f"`runs.executor: in_process`, `sensor.interval_seconds: {args.sensor_interval}`. Workload: "
        f"every {args.interval:g} s, {args.rate} shop mutations to each node, then each node syncs "
        f"(its `_cdc.idx` offset advances); {args.segment_size // 1024} KiB segments; measured for "
        f"{args.duration:g} s after a warm-up. Lag of an update: the timestamp of the first `cdc/loaded` "
        "materialization of its segment whose `covered_to` reaches the update's offset, minus the "
        "time the update was written. The daemon, its code server, the runs, both database servers "
        "and the writer share the machine's cores.",
        "",
        text,
        "",
    ]
    generated = "\n".join(lines)
    replace_section("Lag (daemon)", generated, path)


# --------------------------------------------------------------------------------------------


def write_round(
    workload: ShopWorkload,
    writers: dict[str, NodeWriter],
    watchers: dict[str, IndexWatcher],
    count: int,
    measured: bool,
) -> list[IdxUpdate]:
    batch = list(workload.mutations(count))
    out = []
    for node, writer in writers.items():
        writer.append(batch)
        writer.sync()
        out.extend(watchers[node].poll(time.time(), measured))
    return out


def wait_covered(
    instance: Any, ledger: Ledger, updates: list[IdxUpdate], timeout: float, daemon: subprocess.Popen[bytes]
) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        ledger.refresh(instance)
        if all(ledger.covering(u) is not None for u in updates):
            return True
        if daemon.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited with {daemon.returncode}")
        if time.monotonic() > deadline:
            return False
        time.sleep(1.0)


def run(args: argparse.Namespace, root: Path, stack: contextlib.ExitStack) -> tuple[Outcome, dict[str, Any]]:
    server = args.postgres or stack.enter_context(embedded_postgres(root / "pgserver"))
    dagster_url = create_database(server, "bench_lag_dagster")
    data_url = create_database(server, "bench_lag_data")
    clickhouse_url = args.clickhouse or stack.enter_context(clickhouse_server(root / "clickhouse"))
    overrides: dict[str, Any] = {}
    if args.dequeue_interval is not None:
        overrides["run_coordinator"] = {"config": {"dequeue_interval_seconds": args.dequeue_interval}}
    home = root / "dagster_home"
    instance_env, _ = write_dagster_home(home, dagster_url, overrides)
    config = write_pipeline(root, args.sensor_interval)
    workspace = write_workspace(root)
    env = {
        **os.environ,
        **instance_env,
        "CDC_PIPELINE_CONFIG": str(config),
        "CDC_BENCH_PG_URL": data_url,
        "CDC_BENCH_CH_URL": clickhouse_url,
        **{name: secrets.token_hex(16) for name in MASK_KEY_VARIABLES},
    }
    os.environ.update(instance_env)
    instance = open_instance(home)
    stack.callback(instance.dispose)

    workload = ShopWorkload(seed=args.seed)
    writers = {
        n.name: NodeWriter(root / "nodes" / n.name / "cdc_raw", n, segment_size=args.segment_size)
        for n in DEFAULT_NODES
    }
    watchers = {node: IndexWatcher(node, w) for node, w in writers.items()}
    ledger = Ledger()
    updates: list[IdxUpdate] = []

    log = root / "daemon.log"
    daemon = stack.enter_context(daemon_process(workspace, env, log))
    since = time.time()
    print(f"daemon started (log {log}); warming up", flush=True)
    updates += write_round(workload, writers, watchers, args.rate, measured=False)
    if not wait_covered(instance, ledger, updates, args.warmup_timeout, daemon):
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"warm-up: the first ranges were not loaded in {args.warmup_timeout:g} s\n{tail}")
    print(f"warm-up done in {time.time() - since:.1f} s; writing for {args.duration:g} s", flush=True)

    started = time.monotonic()
    rounds = 0
    while True:
        due = started + rounds * args.interval
        if due - started >= args.duration:
            break
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        updates += write_round(workload, writers, watchers, args.rate, measured=True)
        rounds += 1
        if rounds % max(1, int(30 / args.interval)) == 0:
            ledger.refresh(instance)
            pending = sum(1 for u in updates if ledger.covering(u) is None)
            print(
                f"  {time.monotonic() - started:5.0f} s: {len(updates)} index updates, {pending} not yet loaded",
                flush=True,
            )
            if daemon.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited with {daemon.returncode}; see {log}")
    print("writing stopped; waiting for the ledger to cover every update", flush=True)
    if not wait_covered(instance, ledger, updates, args.drain, daemon):
        print(f"  not everything was loaded within {args.drain:g} s", flush=True)
    timelines = run_timelines(instance, since)
    ticks = attach_ticks(instance, timelines)
    if args.keep_log:
        Path(args.keep_log).write_bytes(log.read_bytes())
    return summarize(updates, ledger, timelines, ticks), overrides


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of measured writing")
    parser.add_argument("--rate", type=int, default=50, help="mutations per node per round")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    parser.add_argument("--segment-size", type=int, default=512 * 1024, help="bytes per segment")
    parser.add_argument("--sensor-interval", type=int, default=1, help="sensor.interval_seconds")
    parser.add_argument(
        "--dequeue-interval",
        type=int,
        help="run_coordinator.config.dequeue_interval_seconds (default: the template's, 1 s; recorded when set)",
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--warmup-timeout", type=float, default=300.0)
    parser.add_argument("--drain", type=float, default=300.0, help="longest wait for the last loads")
    parser.add_argument("--postgres", default=os.environ.get("CDC_BENCH_POSTGRES_URL"))
    parser.add_argument("--clickhouse", default=os.environ.get("CDC_BENCH_CLICKHOUSE_URL"))
    parser.add_argument("--keep-log", help="copy the daemon's log here")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_lag_") as tmp, contextlib.ExitStack() as stack:
        outcome, overrides = run(args, Path(tmp), stack)
    text = report(outcome)
    print()
    print(text)
    if args.record:
        command = "python benchmarks/bench_lag.py"
        defaults = {
            "duration": 180.0,
            "rate": 50,
            "interval": 1.0,
            "segment_size": 512 * 1024,
            "sensor_interval": 1,
            "dequeue_interval": None,
        }
        for name, default in defaults.items():
            value = getattr(args, name)
            if value != default:
                command += (
                    f" --{name.replace('_', '-')} {value:g}"
                    if isinstance(value, float)
                    else (f" --{name.replace('_', '-')} {value}")
                )
        record(text, args, overrides, command + " --record")


if __name__ == "__main__":
    main()
