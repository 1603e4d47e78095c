"""Where a load's time goes, per change: the figures behind docs/benchmarks.md "Loading: where the time goes".

Loads the load benchmark's narrow changes (``bench_load.py``) into PostgreSQL (current state)
and the TimescaleDB history on the embedded PostgreSQL (or $CDC_BENCH_POSTGRES_URL), into chdb
and into a ClickHouse server (a private /usr/sbin/clickhouse-server, or
$CDC_BENCH_CLICKHOUSE_URL), with timers around each stage of ``apply_batch``, then measures the server's share of the write:
the rows just loaded are read back as binary COPY data and COPYed into an empty copy of the
table (with and without its secondary index), next to the same for the raw rows.

    python benchmarks/load_breakdown.py --changes 200000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import inspect
import io
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_load

from cdc_platform.destinations.postgres import sink as pg_sink
from cdc_platform.destinations.timescaledb import sink as ts_sink
from cdc_platform_tests.servers import clickhouse_server, embedded_postgres_url

TIMES: defaultdict[str, float] = defaultdict(float)


@contextlib.contextmanager
def timing(owner: Any, name: str, label: str) -> Iterator[None]:
    """Adds the time spent in ``owner.name`` to ``TIMES[label]`` while the block runs."""
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES[label] += time.perf_counter() - started

    static = isinstance(inspect.getattr_static(owner, name), staticmethod)
    setattr(owner, name, staticmethod(timed) if static else timed)
    try:
        yield
    finally:
        setattr(owner, name, staticmethod(original) if static else original)


def stages(
    dest: Any, name: str, prepared: list[Any], hooks: list[tuple[Any, str, str]]
) -> list[tuple[str, float]]:
    """Applies the batches through ``dest`` with ``hooks`` timed, then once more: (label,
    seconds) rows labelled ``name: …``."""
    TIMES.clear()
    dest.ensure_table(bench_load.TABLE)
    with contextlib.ExitStack() as stack:
        for owner, method, label in hooks:
            stack.enter_context(timing(owner, method, f"{name}: {label}"))
        started = time.perf_counter()
        for batch in prepared:
            dest.apply_batch(bench_load.TABLE, batch)
        total = time.perf_counter() - started
    # The load stage's check after a load: nothing of the batch left to write.
    started = time.perf_counter()
    left = sum(dest.pending_batch(bench_load.TABLE, batch) for batch in prepared)
    checked = time.perf_counter() - started
    assert left == 0, f"{name}: {left} writes pending after the load"
    # The same batches again: what a rerun, a replay or another replica's copy costs.
    started = time.perf_counter()
    for batch in prepared:
        dest.apply_batch(bench_load.TABLE, batch)
    again = time.perf_counter() - started
    dest.close()
    return [
        (f"{name}: apply_batch, total", total),
        *TIMES.items(),
        (f"{name}: pending_batch after the load (the load stage's containment check)", checked),
        (f"{name}: apply_batch of the same batches again (rerun, replica copy), total", again),
    ]


def server_copy(url: str, source: str, drop_secondary: bool) -> float:
    """Seconds to COPY the rows of ``source`` (binary) into an empty table like it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped AND attname <> '_cdc_loaded_at' ORDER BY attnum",
                (source,),
            )
        ]
        names = ", ".join(f'"{c}"' for c in columns)
        data = io.BytesIO()
        with conn.cursor().copy(f"COPY {source} ({names}) TO STDOUT (FORMAT BINARY)") as cp:
            for chunk in cp:
                data.write(chunk)
        conn.execute("DROP TABLE IF EXISTS breakdown_copy")
        conn.execute(f"CREATE TABLE breakdown_copy (LIKE {source} INCLUDING ALL)")
        if drop_secondary:
            for (index,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'breakdown_copy' "
                "AND indexname NOT LIKE '%pkey'"
            ).fetchall():
                conn.execute(f'DROP INDEX "{index}"')
        conn.execute("CHECKPOINT")
        raw = data.getvalue()
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy(f"COPY breakdown_copy ({names}) FROM STDIN (FORMAT BINARY)") as cp,
        ):
            for i in range(0, len(raw), 1 << 20):
                cp.write(raw[i : i + (1 << 20)])
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE breakdown_copy")
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--postgres", default=os.environ.get("CDC_BENCH_POSTGRES_URL"))
    parser.add_argument(
        "--clickhouse",
        default=os.environ.get("CDC_BENCH_CLICKHOUSE_URL"),
        help="a ClickHouse server URL; default: start /usr/sbin/clickhouse-server privately",
    )
    args = parser.parse_args()
    n = args.changes
    prepared = list(bench_load.batches(n, 50_000))
    table = bench_load.TABLE
    from cdc_platform.destinations import columnar

    with (
        tempfile.TemporaryDirectory(prefix="load_breakdown_", ignore_cleanup_errors=True) as tmp,
        contextlib.ExitStack() as stack,
    ):
        url = args.postgres or embedded_postgres_url(Path(tmp) / "postgres")
        prefix = f"breakdown{int(time.time())}_"
        pg = pg_sink.PostgresDestination(url, schema_prefix=prefix)
        rows = stages(
            pg,
            "pg",
            prepared,
            [
                (columnar, "fresh_columns", "select and encode fresh rows"),
                (pg_sink._Store, "stored_keys", "partition-record check"),
                (pg_sink._Store, "write_columns", "COPY of fresh rows (client and server)"),
            ],
        )
        layout = pg.layout(table)
        source = f'"{layout.schema}"."{layout.main}"'
        bench_load._postgres_raw(url, f"{prefix}raw", n)
        raw_table = f'"{prefix}raw0"'  # the first of bench_load's raw tables
        rows += [
            (
                "pg: server COPY of the stored rows (primary key + typed-key index)",
                server_copy(url, source, False),
            ),
            ("pg: server COPY of the stored rows (primary key only)", server_copy(url, source, True)),
            ("pg: server COPY of the raw rows (primary key)", server_copy(url, raw_table, False)),
        ]
        history = ts_sink.TimescaleDestination(url, schema_prefix=f"{prefix}ts_")
        rows += stages(
            history,
            "history",
            prepared,
            [
                (ts_sink, "timed_rows", "plain rows column-wise (hashed ids, keys, write times)"),
                (ts_sink.TimescaleDestination, "_stored_ids", "stored-id lookup"),
                (ts_sink, "history_columns", "documents and columns of the new rows"),
                (ts_sink.TimescaleDestination, "_copy_history", "COPY into the history (client and server)"),
            ],
        )
        layout, _ = history._history(table)
        first = dt.datetime.fromtimestamp(bench_load.BASE_TS / 1e6, dt.UTC)  # the workload's month
        month = f'"{layout.schema}"."{layout.partition_name(first.year, first.month)}"'
        rows.append(
            (
                "history: server COPY of the stored rows (one monthly partition)",
                server_copy(url, month, False),
            )
        )
        from cdc_platform.destinations.clickhouse import ClickHouseDestination
        from cdc_platform.destinations.clickhouse import sink as ch_sink

        rows += stages(
            ClickHouseDestination(f"chdb://{Path(tmp) / 'chdb'}", database_prefix=prefix),
            "chdb",
            prepared,
            [
                (columnar, "fresh_columns", "select and encode fresh rows"),
                (
                    ch_sink._Store,
                    "stored_fresh",
                    "stored-version read (which keys are stored, which unchanged)",
                ),
                (ch_sink._Store, "write_columns", "insert of fresh rows"),
            ],
        )
        # The ClickHouse server (clickhouse-server 18.16 here) through clickhouse-driver.
        from cdc_platform.destinations.clickhouse.client import NativeClient

        ch_url = args.clickhouse or stack.enter_context(clickhouse_server(Path(tmp) / "clickhouse"))
        rows += stages(
            ClickHouseDestination(ch_url, database_prefix=prefix),
            "clickhouse server",
            prepared,
            [
                (columnar, "fresh_columns", "select and encode fresh rows"),
                (ch_sink._Store, "stored_fresh", "stored-version read"),
                (ch_sink._Store, "write_columns", "insert of fresh rows"),
                (NativeClient, "insert", "clickhouse-driver inserts (Python values, native protocol)"),
            ],
        )
    # The load stage's metadata (distinct changes and partitions of each batch), per destination.
    from cdc_platform.destinations.identity import batch_identity

    started = time.perf_counter()
    for batch in prepared:
        batch_identity(table, batch)
    rows.append(("load stage: distinct changes and partitions of the batch", time.perf_counter() - started))
    print("| stage | µs per change |")
    print("|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds / n * 1e6:.2f} |")


if __name__ == "__main__":
    main()
