"""Real Cassandra-written segments decode exactly as Cassandra's own replay reads them."""

from __future__ import annotations

from pathlib import Path

from cdc_platform.commitlog.model import ComplexColumn
from cdc_platform.commitlog.mutation import MutationDecoder
from cdc_platform.commitlog.segment import DecodedEntry, Frame, SegmentDecoder, SegmentReader, SkippedEntry
from cdc_platform.commitlog.writer import MutationEncoder
from cdc_platform.schema.cql import parse_schema

# The schema from the fixture's README (table id from the upgrade test's hash.txt).
SCHEMA_3013 = """
CREATE KEYSPACE "Keyspace1" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
CREATE TABLE "Keyspace1"."Standard1" (
    key ascii,
    col ascii,
    val blob,
    val0 blob,
    PRIMARY KEY (key, col)
) WITH ID = 26be1710-7cb9-11ee-9fce-59fe9713701b;
"""


def _to_i32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def test_cassandra_3013_replay_figures(cassandra_3013_dir: Path) -> None:
    """``CommitLogUpgradeTest``'s figures: cells=1404, hash=-576744414."""
    schema = parse_schema(SCHEMA_3013)
    cells = 0
    digest = 0
    unknown_total = 0
    for path in sorted(cassandra_3013_dir.glob("CommitLog-*.log")):
        decoder = SegmentDecoder(path, schema)
        for item in decoder:
            if isinstance(item, SkippedEntry):
                assert item.reason == "unknown_table"
                continue
            assert isinstance(item, DecodedEntry)
            for update in item.mutation.updates:
                for row in update.rows:
                    first = row.clustering[0] if row.clustering else None
                    if not first or not first.startswith(b"name"):
                        continue
                    for data in row.data:
                        for cell in data.cells if isinstance(data, ComplexColumn) else (data,):
                            shift = 0
                            for byte in cell.value:
                                digest = _to_i32(digest + ((byte & 0xFF) << shift))
                                shift = (shift + 8) & 0x1F
                            cells += 1
        report = decoder.report
        assert not report.damaged
        assert not report.truncated
        unknown_total += sum(report.unknown_tables.values())
    assert cells == 1404
    assert digest == -576744414
    # The segments also hold Cassandra's own system-table mutations, skipped and counted.
    assert unknown_total > 0


def test_resume_position_skips_consumed_entries(cassandra_3013_dir: Path) -> None:
    schema = parse_schema(SCHEMA_3013)
    path = sorted(cassandra_3013_dir.glob("CommitLog-*.log"))[0]
    everything = [e for e in SegmentDecoder(path, schema) if isinstance(e, DecodedEntry)]
    middle = everything[len(everything) // 2]
    rest = [
        e for e in SegmentDecoder(path, schema, start=middle.entry_location) if isinstance(e, DecodedEntry)
    ]
    assert [e.position for e in rest] == [
        e.position for e in everything if e.entry_location > middle.entry_location
    ]
    bounded = [
        e for e in SegmentDecoder(path, schema, end=middle.entry_location) if isinstance(e, DecodedEntry)
    ]
    assert bounded[-1].entry_location == middle.entry_location
    assert len(bounded) + len(rest) == len(everything)


def test_writer_reproduces_cassandras_bytes(cassandra_3013_dir: Path) -> None:
    """Re-encoding every decoded Keyspace1.Standard1 mutation gives Cassandra's own entry bytes.

    The writer follows the format (encoding stats, flags, subset bitmaps, row-timestamp reuse,
    the statement's header columns), not merely something the reader accepts.
    """
    schema = parse_schema(SCHEMA_3013)
    encoder = MutationEncoder(6)
    compared = 0
    for path in sorted(cassandra_3013_dir.glob("CommitLog-*.log")):
        reader = SegmentReader(path)
        decoder = MutationDecoder(schema, reader.descriptor.version)
        for frame in reader.frames():
            assert isinstance(frame, Frame)
            _, table_id = decoder.table_ids(frame.payload)
            if not decoder.known(table_id):
                continue  # Cassandra's system tables: no schema to encode them with
            mutation = decoder.decode(frame.payload)
            assert encoder.encode(mutation) == frame.payload, f"entry at {frame.position} of {path.name}"
            compared += 1
    assert compared == 1404
