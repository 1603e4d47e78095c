"""Decode throughput: narrow-row and wide (collection) workloads, one core.

Prints figures and, with --record, writes them to docs/benchmarks.md (section "Decoding").

    python benchmarks/bench_decode.py --mutations 200000 --record
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from cdc_platform.changes.arrow import ChangeBatch
from cdc_platform.changes.records import changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.commitlog.cdc_index import read_cdc_index
from cdc_platform.commitlog.segment import DecodedEntry, SegmentDecoder
from cdc_platform.commitlog.writer import SegmentWriter
from cdc_platform.gc_pause import paused_gc
from cdc_platform.schema.cql import parse_schema

SCHEMA = """
CREATE KEYSPACE bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
CREATE TABLE bench.narrow (
    id bigint PRIMARY KEY,
    name text,
    price double,
    qty int,
    updated timestamp
) WITH ID = 00000000-0000-1000-8000-0000000000a1;
CREATE TABLE bench.wide (
    id bigint,
    bucket int,
    attrs map<text, text>,
    events list<bigint>,
    labels set<text>,
    note text,
    PRIMARY KEY (id, bucket)
) WITH ID = 00000000-0000-1000-8000-0000000000a2;
"""


def write_segments(directory: Path, kind: str, count: int, compression: str | None) -> list[Path]:
    schema = parse_schema(SCHEMA)
    table = schema.table(f"bench.{kind}")
    paths = []
    seg = 1_767_225_600_000
    writer = SegmentWriter(directory, seg, compression=compression, segment_size=32 << 20)
    ts = 1_767_225_600_000_000
    for i in range(count):
        ts += 1
        b = UpdateBuilder(table, {"id": i}, now=ts // 1_000_000)
        if kind == "narrow":
            b.insert({}, {"name": f"item-{i}", "price": i * 0.25, "qty": i % 1000, "updated": ts // 1000}, ts)
        else:
            b.insert(
                {"bucket": i % 16},
                {
                    "attrs": [(f"k{j}", f"value-{i}-{j}") for j in range(4)],
                    "events": list(range(i, i + 5)),
                    "labels": ["a", "b", f"l{i % 7}"],
                    "note": "x" * 40,
                },
                ts,
            )
        m = b.mutation()
        try:
            writer.add(m)
        except Exception:
            writer.close()
            paths.append(writer.path)
            seg += 1
            writer = SegmentWriter(directory, seg, compression=compression, segment_size=32 << 20)
            writer.add(m)
        if i % 1000 == 999:
            writer.sync()
    writer.close()
    paths.append(writer.path)
    return paths


def measure(paths: list[Path], stage: str, repeat: int) -> tuple[float, int, int]:
    schema = parse_schema(SCHEMA)
    times = []
    count = 0
    # Uncompressed commit log bytes (each segment's durable logical end, from its _cdc.idx).
    size = 0
    for p in paths:
        idx = read_cdc_index(p.with_name(p.name.replace(".log", "_cdc.idx")))
        size += idx.offset if idx else p.stat().st_size
    for _ in range(repeat):
        count = 0
        started = time.process_time()
        for p in paths:
            with paused_gc():  # as the pipeline's decode_range
                decoder = SegmentDecoder(p, schema)
                changes = []
                for item in decoder:
                    if isinstance(item, DecodedEntry):
                        count += 1
                        if stage != "decode":
                            for u in item.mutation.updates:
                                changes.extend(
                                    changes_of_update(
                                        u, segment_id=decoder.report.segment_id, position=item.entry_location
                                    )
                                )
                if stage == "arrow" and changes:
                    table = schema.table(f"{changes[0].keyspace}.{changes[0].table}")
                    ChangeBatch.from_changes(table, changes)
        times.append(time.process_time() - started)
    return statistics.median(times), count, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mutations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="write the figures to docs/benchmarks.md")
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("narrow", "wide"):
            for compression in (None, "lz4"):
                d = Path(tmp) / f"{kind}-{compression}"
                paths = write_segments(d, kind, args.mutations, compression)
                for stage in ("decode", "records", "arrow"):
                    seconds, count, size = measure(paths, stage, args.repeat)
                    rate = count / seconds
                    mb = size / seconds / 1e6
                    line = f"| {kind} | {compression or 'none'} | {stage} | {count:,} | {rate:,.0f} | {mb:,.1f} |"
                    print(line, flush=True)
                    lines.append(line)
    if args.record:
        record(lines, args)


def record(lines: list[str], args: argparse.Namespace) -> None:
    path = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = [
        "## Decoding",
        "",
        f"Command: `python benchmarks/bench_decode.py --mutations {args.mutations} --repeat {args.repeat} --record`",
        f"Machine: {platform.machine()}, {platform.processor() or 'unknown CPU'}, Python {platform.python_version()}, "
        f"one process (CPU time, median of {args.repeat}); measured {time.strftime('%Y-%m-%d')}.",
        "",
        "Stages: `decode` = segment → decoded mutations; `records` = + row-level change records with typed "
        "values; `arrow` = + Arrow change batch. Rates are per core (process CPU time). `narrow` is a "
        "5-column table (bigint key, text, double, int, timestamp); `wide` has a clustering column, "
        "a map of 4 entries, a list of 5, a set of 3 and a 40-character text.",
        "",
        "| table | compression | stage | mutations | mutations/s | MB/s (uncompressed commit log) |",
        "|---|---|---|---|---|---|",
        *lines,
        "",
    ]
    start = text.find("## Decoding")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + "\n".join(section) + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(section)
    path.write_text(text)
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
