"""Decoder behaviours beyond the byte round trip: dropped columns, unknown columns, counters,
UDT evolution, 5.0 deletion times, table filtering, and range tombstone records."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest

from cdc_platform.changes.records import ChangeKind, changes_of_update
from cdc_platform.commitlog.errors import UnknownColumnError
from cdc_platform.commitlog.model import (
    BoundKind,
    Cell,
    ComplexColumn,
    DeletionTime,
    Liveness,
    Mutation,
    PartitionUpdate,
    RangeTombstoneMarker,
    Row,
)
from cdc_platform.commitlog.segment import DecodedEntry, SegmentDecoder, SkippedEntry
from cdc_platform.commitlog.writer import SegmentWriter
from cdc_platform.schema.cql import parse_schema
from cdc_platform.schema.model import Column, ColumnKind, Schema, Table
from cdc_platform.schema.types import TupleType, native
from cdc_platform.schema.values import serialize

DROPPED = """
CREATE TABLE ks.t (
    k int PRIMARY KEY,
    v text,
    old text,
    gone list<int>,
    back int
) WITH ID = 00000000-0000-1000-8000-000000000001;
ALTER TABLE ks.t DROP old USING TIMESTAMP 1000;
ALTER TABLE ks.t DROP gone USING TIMESTAMP 1000;
ALTER TABLE ks.t DROP back USING TIMESTAMP 1000;
ALTER TABLE ks.t ADD back int;
"""


def _decode(
    tmp_path: Path, schema: Schema, mutations: list[Mutation], version: int = 7, **kwargs: object
) -> list[object]:
    w = SegmentWriter(tmp_path, 77, version=version, segment_size=1 << 20)
    for m in mutations:
        w.add(m)
    w.close()
    return list(SegmentDecoder(w.path, schema, **kwargs))  # type: ignore[arg-type]


def test_dropped_columns_discard_cells_written_before_the_drop(tmp_path: Path) -> None:
    schema = parse_schema(DROPPED)
    t = schema.table("ks.t")
    old = t.dropped["old"].as_column()
    gone = t.dropped["gone"].as_column()
    back = t.column("back")
    v = t.column("v")
    row_before = Row(
        (),
        None,
        None,
        (
            Cell(back, 999, serialize(native("int"), 1)),  # re-added column, written before the drop
            Cell(old, 1000, b"x"),  # at the drop time: discarded too (<=)
            Cell(v, 500, b"kept"),
            ComplexColumn(
                gone, DeletionTime(900, 1), (Cell(gone, 900, serialize(native("int"), 5), path=b"\x00" * 16),)
            ),
        ),
    )
    only_dropped = Row((), None, None, (Cell(old, 10, b"y"),))
    row_after = Row((), None, None, (Cell(back, 1001, serialize(native("int"), 2)), Cell(old, 1001, b"late")))
    mutations = [
        Mutation((PartitionUpdate(t, serialize(native("int"), 1), unfiltereds=(row_before,)),)),
        Mutation((PartitionUpdate(t, serialize(native("int"), 2), unfiltereds=(only_dropped,)),)),
        Mutation((PartitionUpdate(t, serialize(native("int"), 3), unfiltereds=(row_after,)),)),
    ]
    out = [e for e in _decode(tmp_path, schema, mutations) if isinstance(e, DecodedEntry)]
    assert [tuple(c.column.name for c in r.data) for e in out for r in e.mutation.updates[0].rows] == [
        ("v",),  # 'back' (re-added), 'old' and 'gone' written at or before the drop are discarded
        ("back", "old"),  # the partition with only dropped data has no row at all; later cells survive
    ]
    assert out[1].mutation.updates[0].rows == []
    late = out[2].mutation.updates[0].rows[0].data[1]
    assert isinstance(late, Cell) and late.column.type == native("text")  # decoded with the dropped type


def test_unknown_column_asks_for_a_schema_refresh(tmp_path: Path) -> None:
    newer = parse_schema(DROPPED.replace("back int\n)", "back int,\n    added_later text\n)"))
    t_new = newer.table("ks.t")
    m = Mutation(
        (
            PartitionUpdate(
                t_new,
                serialize(native("int"), 1),
                unfiltereds=(Row((), None, None, (Cell(t_new.column("added_later"), 5, b"z"),)),),
            ),
        )
    )
    w = SegmentWriter(tmp_path, 88, segment_size=1 << 20)
    w.add(m)
    w.close()
    with pytest.raises(UnknownColumnError) as info:
        list(SegmentDecoder(w.path, parse_schema(DROPPED)))
    msg = str(info.value)
    assert "added_later" in msg and "ks.t" in msg and "schema pull" in msg
    assert "segment 88" in msg and "position 28" in msg and str(w.path) in msg


def test_counter_cells_expose_total_and_raw_context(tmp_path: Path) -> None:
    schema = parse_schema(
        "CREATE TABLE ks.c (k int PRIMARY KEY, hits counter) WITH ID = 00000000-0000-1000-8000-0000000000c1;"
    )
    t = schema.table("ks.c")
    # Two global shards: counts 40 and 2.
    context = struct.pack(">hhh", 2, -32768, -32767)
    context += uuid.uuid4().bytes + struct.pack(">qq", 3, 40) + uuid.uuid4().bytes + struct.pack(">qq", 1, 2)
    m = Mutation(
        (
            PartitionUpdate(
                t,
                serialize(native("int"), 1),
                unfiltereds=(Row((), None, None, (Cell(t.column("hits"), 9, context),)),),
            ),
        )
    )
    (entry,) = _decode(tmp_path, schema, [m])
    assert isinstance(entry, DecodedEntry)
    (change,) = changes_of_update(entry.mutation.updates[0])
    (cell,) = change.cells
    assert cell.value == 42
    assert cell.counter_context == context


def test_frozen_udt_written_before_a_field_was_added(tmp_path: Path) -> None:
    schema = parse_schema(
        """
        CREATE TYPE ks.addr (street text, city text, zip int);
        CREATE TABLE ks.u (k int PRIMARY KEY, a frozen<addr>) WITH ID = 00000000-0000-1000-8000-0000000000d1;
        """.replace(
            "CREATE TYPE",
            "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy'};\nCREATE TYPE",
            1,
        )
    )
    t = schema.table("ks.u")
    # Serialized with the old two-field type: zip is missing.
    old_value = serialize(TupleType((native("text"), native("text"))), ("Main St", "Lyon"))
    m = Mutation(
        (
            PartitionUpdate(
                t,
                serialize(native("int"), 1),
                unfiltereds=(Row((), None, None, (Cell(t.column("a"), 5, old_value),)),),
            ),
        )
    )
    (entry,) = _decode(tmp_path, schema, [m])
    assert isinstance(entry, DecodedEntry)
    (change,) = changes_of_update(entry.mutation.updates[0])
    assert change.cells[0].value == {"street": "Main St", "city": "Lyon", "zip": None}


def test_version_8_deletion_times_are_unsigned(tmp_path: Path) -> None:
    """Cassandra 5.0 (commit log version 8) stores local deletion times as uint32: beyond 2038."""
    table = Table(
        "ks",
        "t",
        uuid.uuid4(),
        [
            Column("k", native("int"), ColumnKind.PARTITION_KEY),
            Column("v", native("int"), ColumnKind.REGULAR),
        ],
    )
    schema = Schema()
    schema.add_table(table)
    after_2038 = 0xF0000000  # year 2097
    row = Row(
        (),
        Liveness(10, 3600, after_2038),
        DeletionTime(5, after_2038 - 1),
        (Cell(table.column("v"), 10, serialize(native("int"), 1), 3600, after_2038),),
    )
    m = Mutation((PartitionUpdate(table, serialize(native("int"), 1), unfiltereds=(row,)),))
    (entry,) = _decode(tmp_path, schema, [m], version=8)
    assert isinstance(entry, DecodedEntry)
    assert entry.mutation == m
    # The same bytes read as version 7 are signed (negative): the version decides the meaning.
    w = SegmentWriter(tmp_path / "v7", 1, version=7, segment_size=1 << 20)
    w.add(m)
    w.close()
    (e7,) = list(SegmentDecoder(w.path, schema))
    assert isinstance(e7, DecodedEntry)
    assert e7.mutation.updates[0].rows[0].liveness == Liveness(10, 3600, after_2038 - (1 << 32))


def test_not_captured_tables_are_skipped_without_decoding(tmp_path: Path) -> None:
    schema = parse_schema(
        "CREATE TABLE ks.a (k int PRIMARY KEY, v int) WITH ID = 00000000-0000-1000-8000-00000000000a;\n"
        "CREATE TABLE ks.b (k int PRIMARY KEY, v int) WITH ID = 00000000-0000-1000-8000-00000000000b;"
    )
    a, b = schema.table("ks.a"), schema.table("ks.b")
    rows = [
        Row((), Liveness(1), None, (Cell(t.column("v"), 1, serialize(native("int"), 3)),)) for t in (a, b)
    ]
    ma = Mutation((PartitionUpdate(a, serialize(native("int"), 1), unfiltereds=(rows[0],)),))
    mb = Mutation((PartitionUpdate(b, serialize(native("int"), 1), unfiltereds=(rows[1],)),))
    both = Mutation(
        (
            PartitionUpdate(a, serialize(native("int"), 2), unfiltereds=(rows[0],)),
            PartitionUpdate(b, serialize(native("int"), 2), unfiltereds=(rows[1],)),
        )
    )
    out = _decode(tmp_path, schema, [ma, mb, both], capture={str(a.id)})
    assert [type(e).__name__ for e in out] == ["DecodedEntry", "SkippedEntry", "DecodedEntry"]
    assert (
        isinstance(out[1], SkippedEntry) and out[1].reason == "not_captured" and out[1].table_id == str(b.id)
    )
    assert isinstance(out[2], DecodedEntry) and [u.table.name for u in out[2].mutation.updates] == ["a"]


def test_range_tombstone_bounds_and_boundaries_become_ranges() -> None:
    schema = parse_schema(
        "CREATE TABLE ks.r (k int, c int, v int, PRIMARY KEY (k, c)) WITH ID = 00000000-0000-1000-8000-0000000000e1;"
    )
    t = schema.table("ks.r")
    i = lambda n: serialize(native("int"), n)  # noqa: E731
    d1, d2 = DeletionTime(10, 100), DeletionTime(20, 200)
    markers = (
        RangeTombstoneMarker(BoundKind.INCL_START_BOUND, (i(1),), (d1,)),
        RangeTombstoneMarker(BoundKind.EXCL_END_INCL_START_BOUNDARY, (i(5),), (d1, d2)),
        RangeTombstoneMarker(BoundKind.INCL_END_BOUND, (), (d2,)),
    )
    changes = list(changes_of_update(PartitionUpdate(t, i(1), unfiltereds=markers)))
    assert [c.kind for c in changes] == [ChangeKind.RANGE_DELETE, ChangeKind.RANGE_DELETE]
    first, second = changes
    assert (first.range_start.clustering, first.range_start.inclusive) == ({"c": 1}, True)  # type: ignore[union-attr]
    assert (first.range_end.clustering, first.range_end.inclusive) == ({"c": 5}, False)  # type: ignore[union-attr]
    assert first.deletion_timestamp == 10
    assert (second.range_start.clustering, second.range_start.inclusive) == ({"c": 5}, True)  # type: ignore[union-attr]
    assert (second.range_end.clustering, second.range_end.inclusive) == ({}, True)  # type: ignore[union-attr]
    assert second.deletion_timestamp == 20
