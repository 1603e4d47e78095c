"""Segments written by :class:`SegmentWriter` decode to exactly the mutations written.

The writer encodes :mod:`cdc_platform.commitlog.model` objects with Cassandra's choices, so a
random table and random mutations make an oracle for the whole read path: descriptor, sync
sections (plain, compressed, encrypted), entry framing, resume and durable positions, the
``_cdc.idx`` file and mutation decoding for commit log versions 6, 7 and 8.
"""

from __future__ import annotations

import decimal
import shutil
import struct
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_platform.commitlog.cdc_index import CdcIndex, read_cdc_index
from cdc_platform.commitlog.encryption import RawKeyProvider
from cdc_platform.commitlog.model import (
    Cell,
    ComplexColumn,
    DeletionTime,
    Liveness,
    Mutation,
    PartitionUpdate,
    Row,
)
from cdc_platform.commitlog.mutation import CELL_USE_ROW_TIMESTAMP, CELL_USE_ROW_TTL, MutationDecoder
from cdc_platform.commitlog.segment import DecodedEntry, SegmentDecoder, SegmentReader, SkippedEntry
from cdc_platform.commitlog.vint import read_uvint
from cdc_platform.commitlog.writer import MutationEncoder, SegmentWriter, column_sort_key, encode_subset
from cdc_platform.schema.model import Column, ColumnKind, DroppedColumn, Schema, Table
from cdc_platform.schema.types import ListType, MapType, NativeType, SetType, UserType
from cdc_platform.schema.values import deserialize, serialize
from cdc_platform_tests import strategies as cst

CODECS = (None, "lz4", "snappy", "deflate", "zstd", "noop", "encrypted")
VERSIONS = (6, 7, 8)
SEGMENT_SIZE = 1 << 20

ROUNDTRIP_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)


@contextmanager
def fresh_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory of its own for one hypothesis example (``tmp_path`` is shared by all)."""
    path = tmp_path / uuid.uuid4().hex
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def schema_of(*tables: Table) -> Schema:
    schema = Schema()
    for t in tables:
        schema.add_table(t)
    return schema


@dataclass
class Written:
    """A segment written by the test, with what the writer said about it."""

    path: Path
    writer: SegmentWriter
    mutations: list[Mutation]
    locations: list[int]  # what add() returned, one per mutation
    durable: list[int]  # what each sync() returned, in call order
    snapshot: tuple[int, bytes] | None  # (durable offset, file bytes right after that sync)
    close_offset: int
    key_provider: RawKeyProvider | None


def write_segment(
    directory: Path,
    mutations: list[Mutation],
    syncs_after: list[int],
    *,
    version: int,
    codec: str | None,
    segment_id: int,
    key: bytes | None = None,
    chunk_length: int = 64 * 1024,
    snapshot_at: int | None = None,
) -> Written:
    """Writes ``mutations`` with ``syncs_after[i]`` sync() calls after the i-th, then closes."""
    encrypted = codec == "encrypted"
    writer = SegmentWriter(
        directory,
        segment_id,
        version=version,
        compression=None if encrypted else codec,
        encryption_key=key if encrypted else None,
        segment_size=SEGMENT_SIZE,
        chunk_length=chunk_length,
    )
    locations: list[int] = []
    durable: list[int] = []
    snapshot = None
    for mutation, syncs in zip(mutations, syncs_after, strict=True):
        locations.append(writer.add(mutation))
        for _ in range(syncs):
            offset = writer.sync()
            durable.append(offset)
            # Cassandra rewrites the index on every sync: the durable offset, not yet COMPLETED.
            assert read_cdc_index(writer.index_path) == CdcIndex(offset, False)
            if snapshot_at is not None and len(durable) - 1 == snapshot_at:
                snapshot = (offset, writer.path.read_bytes())
    close_offset = writer.close()
    return Written(
        path=writer.path,
        writer=writer,
        mutations=mutations,
        locations=locations,
        durable=durable,
        snapshot=snapshot,
        close_offset=close_offset,
        key_provider=RawKeyProvider(key) if encrypted and key is not None else None,
    )


def decode_all(
    written: Written,
    schema: Schema,
    *,
    start: int = 0,
    end: int | None = None,
    capture: set[str] | None = None,
    data: bytes | None = None,
) -> tuple[list[DecodedEntry | SkippedEntry], SegmentDecoder]:
    decoder = SegmentDecoder(
        written.path,
        schema,
        capture=capture,
        start=start,
        end=end,
        key_provider=written.key_provider,
        data=data,
    )
    return list(decoder), decoder


# --------------------------------------------------------------------------------------------
# The generated values themselves


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_generated_values_survive_serialization(data: st.DataObject) -> None:
    """``values_for`` gives values that ``serialize``/``deserialize`` carry without loss (as bytes)."""
    cql_type = data.draw(cst.cql_types(2))
    value = data.draw(cst.values_for(cql_type))
    raw = serialize(cql_type, value)
    assert serialize(cql_type, deserialize(cql_type, raw)) == raw


# --------------------------------------------------------------------------------------------
# Random segments, every version, compression and encryption


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c or "plain")
@ROUNDTRIP_SETTINGS
@given(data=st.data())
def test_segment_roundtrip(codec: str | None, data: st.DataObject, tmp_path: Path) -> None:
    version = data.draw(st.sampled_from(VERSIONS), label="version")
    tables = data.draw(
        st.lists(
            cst.tables(), min_size=1, max_size=2, unique_by=(lambda t: (t.keyspace, t.name), lambda t: t.id)
        ),
        label="tables",
    )
    mutations = data.draw(
        st.lists(
            st.sampled_from(tables).flatmap(lambda t: cst.mutations(t, version)), min_size=1, max_size=6
        ),
        label="mutations",
    )
    syncs_after = data.draw(
        st.lists(st.sampled_from([0, 0, 1, 2]), min_size=len(mutations), max_size=len(mutations)),
        label="syncs_after",
    )
    segment_id = data.draw(st.integers(0, (1 << 63) - 1), label="segment_id")
    key = data.draw(st.binary(min_size=16, max_size=16), label="key")
    chunk_length = data.draw(st.sampled_from([64, 1000, 64 * 1024]), label="chunk_length")
    n_syncs = sum(syncs_after)
    snapshot_at = data.draw(st.integers(0, n_syncs - 1), label="snapshot_at") if n_syncs else None
    schema = schema_of(*tables)
    expected = [cst.expected_decoded(m) for m in mutations]

    with fresh_dir(tmp_path) as directory:
        w = write_segment(
            directory,
            mutations,
            syncs_after,
            version=version,
            codec=codec,
            segment_id=segment_id,
            key=key,
            chunk_length=chunk_length,
            snapshot_at=snapshot_at,
        )
        assert read_cdc_index(w.writer.index_path) == CdcIndex(w.close_offset, True)
        assert w.close_offset >= w.locations[-1]
        assert w.durable == sorted(w.durable)

        entries, decoder = decode_all(w, schema)
        assert all(isinstance(e, DecodedEntry) for e in entries)
        assert [e.mutation for e in entries] == expected
        assert [e.entry_location for e in entries] == w.locations
        encoder = MutationEncoder(version)
        for entry, mutation in zip(entries, mutations, strict=True):
            # size + size CRC + payload + payload CRC
            assert entry.entry_location - entry.position == 12 + len(encoder.encode(mutation))
        report = decoder.report
        assert (report.entries, report.decoded, report.not_captured) == (len(mutations),) * 2 + (0,)
        assert not report.damaged
        assert not report.truncated
        assert not report.unknown_tables
        assert report.last_entry_location == w.locations[-1]
        assert report.version == version
        assert report.segment_id == segment_id
        assert report.encrypted == (codec == "encrypted")
        assert report.compression == (None if codec == "encrypted" else codec)

        # Bounded reads between durable offsets (and resume positions) give exactly the entries
        # whose resume position lies in (start, end].
        durable_marks = sorted({0, *w.durable, w.close_offset})
        resume_marks = sorted({0, *w.durable, *w.locations, w.close_offset})
        for marks in (durable_marks, resume_marks):
            start, end = sorted(
                data.draw(st.lists(st.sampled_from(marks), min_size=2, max_size=2), label="bounds")
            )
            bounded, bounded_decoder = decode_all(w, schema, start=start, end=end)
            want = [i for i, loc in enumerate(w.locations) if start < loc <= end]
            assert [e.entry_location for e in bounded] == [w.locations[i] for i in want]
            assert [e.mutation for e in bounded if isinstance(e, DecodedEntry)] == [expected[i] for i in want]
            assert bounded_decoder.report.last_entry_location == (w.locations[want[-1]] if want else start)
            # Resuming at ``start`` without an end reads to the end of the data.
            tail, _ = decode_all(w, schema, start=start)
            assert [e.entry_location for e in tail] == [loc for loc in w.locations if loc > start]

        # A snapshot of the file taken right after a sync (a live segment) reads up to that sync.
        if w.snapshot is not None:
            offset, snapshot = w.snapshot
            live, _ = decode_all(w, schema, data=snapshot, end=offset)
            assert [e.entry_location for e in live] == [loc for loc in w.locations if loc <= offset]
            assert [e.mutation for e in live if isinstance(e, DecodedEntry)] == [
                m for m, loc in zip(expected, w.locations, strict=True) if loc <= offset
            ]


@ROUNDTRIP_SETTINGS
@given(data=st.data())
def test_wide_table_roundtrip(data: st.DataObject, tmp_path: Path) -> None:
    """Tables with ≥ 64 columns: rows use the present-index and missing-index subset encodings."""
    version = data.draw(st.sampled_from(VERSIONS))
    table = data.draw(cst.wide_tables())
    mutations = data.draw(st.lists(cst.mutations(table, version), min_size=1, max_size=3))
    with fresh_dir(tmp_path) as directory:
        w = write_segment(
            directory, mutations, [1] * len(mutations), version=version, codec="lz4", segment_id=1
        )
        entries, _ = decode_all(w, schema_of(table))
    assert [e.mutation for e in entries if isinstance(e, DecodedEntry)] == [
        cst.expected_decoded(m) for m in mutations
    ]


# --------------------------------------------------------------------------------------------
# Explicit cases

KS = "shop"
ORDERS = Table(
    KS,
    "orders",
    uuid.UUID("00000000-0000-0000-0000-00000000000a"),
    [
        Column("customer", NativeType("text"), ColumnKind.PARTITION_KEY),
        Column("placed", NativeType("timestamp"), ColumnKind.CLUSTERING, 0, True),
        Column("total", NativeType("decimal"), ColumnKind.REGULAR),
        Column("items", MapType(NativeType("text"), NativeType("int")), ColumnKind.REGULAR),
        Column("Note", NativeType("text"), ColumnKind.REGULAR),
        Column("region", NativeType("text"), ColumnKind.STATIC),
    ],
)
CUSTOMERS = Table(
    KS,
    "customers",
    uuid.UUID("00000000-0000-0000-0000-00000000000b"),
    [
        Column("customer", NativeType("text"), ColumnKind.PARTITION_KEY),
        Column("email", NativeType("text"), ColumnKind.REGULAR),
        Column("tags", SetType(NativeType("text")), ColumnKind.REGULAR),
    ],
)
TS = 1_700_000_000_000_000


def orders_update(customer: str, n: int) -> PartitionUpdate:
    items = ORDERS.column("items")
    row = Row(
        (serialize(NativeType("timestamp"), 1_700_000_000_000 + n),),
        liveness=Liveness(TS + n),
        data=(
            Cell(ORDERS.column("Note"), TS + n, b"gift"),
            Cell(ORDERS.column("total"), TS + n, serialize(NativeType("decimal"), decimal.Decimal("9.99"))),
            ComplexColumn(
                items,
                DeletionTime(TS + n - 1, 1_700_000_000),
                (Cell(items, TS + n, serialize(NativeType("int"), n), path=b"pen"),),
            ),
        ),
    )
    static = Row((), data=(Cell(ORDERS.column("region"), TS, b"eu"),), is_static=True)
    return PartitionUpdate(ORDERS, customer.encode(), static_row=static, unfiltereds=(row,))


def customers_update(customer: str) -> PartitionUpdate:
    tags = CUSTOMERS.column("tags")
    row = Row(
        (),
        liveness=Liveness(TS, 3600, 1_700_003_600),
        data=(
            Cell(CUSTOMERS.column("email"), TS, b"a@example.org", 3600, 1_700_003_600),
            ComplexColumn(tags, None, (Cell(tags, TS, b"", path=b"vip"),)),
        ),
    )
    return PartitionUpdate(CUSTOMERS, customer.encode(), unfiltereds=(row,))


def test_explicit_rows_are_in_column_sort_order() -> None:
    """The explicit fixtures below list data in header order, as the decoder returns it."""
    row = orders_update("x", 1).rows[0]
    names = [d.column.name for d in row.data]
    # Simple before complex; "Note" < "total" (byte order), the map last.
    assert names == ["Note", "total", "items"]


@pytest.mark.parametrize("version", VERSIONS)
def test_mutation_with_two_tables_of_one_keyspace(version: int, tmp_path: Path) -> None:
    both = Mutation((orders_update("ann", 1), customers_update("ann")))
    only_orders = Mutation((orders_update("bob", 2),))
    w = write_segment(tmp_path, [both, only_orders], [1, 0], version=version, codec=None, segment_id=7)
    entries, _decoder = decode_all(w, schema_of(ORDERS, CUSTOMERS))
    assert [e.mutation for e in entries if isinstance(e, DecodedEntry)] == [both, only_orders]
    assert entries[0].mutation.keyspace == KS  # type: ignore[union-attr]
    # The expiring cell shares the row's TTL and expiry: written with USE_ROW_TTL, read back whole.
    email = entries[0].mutation.updates[1].rows[0].data[0]  # type: ignore[union-attr]
    assert isinstance(email, Cell) and (email.ttl, email.local_deletion_time) == (3600, 1_700_003_600)

    # Capturing one table keeps that table's update of the two-table mutation.
    captured, cap_decoder = decode_all(w, schema_of(ORDERS, CUSTOMERS), capture={str(CUSTOMERS.id)})
    assert isinstance(captured[0], DecodedEntry)
    assert captured[0].mutation == Mutation((customers_update("ann"),))
    assert isinstance(captured[1], SkippedEntry) and captured[1].reason == "not_captured"
    assert (cap_decoder.report.decoded, cap_decoder.report.not_captured) == (1, 1)


def test_noop_compressed_sections_hold_the_entries_as_they_are(tmp_path: Path) -> None:
    """``NoopCompressor`` goes through CompressedSegment like any compressor: per section the sync
    marker, the uncompressed length, then the compressor's output, here the entry bytes themselves."""
    mutations = [Mutation((orders_update("ann", 1),)), Mutation((orders_update("bob", 2),))]
    w = write_segment(tmp_path, mutations, [1, 0], version=7, codec="noop", segment_id=21)
    data = w.path.read_bytes()
    reader = SegmentReader(w.path)
    assert reader.descriptor.parameters["compressionClass"] == "NoopCompressor"
    assert reader.descriptor.compression is not None
    assert reader.descriptor.compression.algorithm == "noop"
    encoder = MutationEncoder(7)
    header = reader.descriptor.header_length
    first = encoder.encode(mutations[0])
    entry = struct.pack(">i", len(first))
    entry += struct.pack(">I", zlib.crc32(entry)) + first + struct.pack(">I", zlib.crc32(entry + first))
    # marker (next = header + 12 + entry, CRC), the uncompressed length, then the entry as written.
    assert struct.unpack_from(">iI", data, header)[0] == header + 12 + len(entry)
    assert struct.unpack_from(">I", data, header + 8)[0] == len(entry)
    assert data[header + 12 : header + 12 + len(entry)] == entry
    entries, decoder = decode_all(w, schema_of(ORDERS, CUSTOMERS))
    assert [e.mutation for e in entries if isinstance(e, DecodedEntry)] == mutations
    assert [e.entry_location for e in entries] == w.locations
    assert decoder.report.compression == "noop" and not decoder.report.damaged


def test_unknown_table_is_skipped_and_counted(tmp_path: Path) -> None:
    mutations = [
        Mutation((orders_update("ann", 1),)),
        Mutation((customers_update("ann"),)),
        Mutation((orders_update("bob", 2),)),
        Mutation((customers_update("bob"),)),
        Mutation((orders_update("cy", 3),)),
    ]
    w = write_segment(tmp_path, mutations, [0, 1, 0, 0, 1], version=7, codec="zstd", segment_id=42)
    entries, decoder = decode_all(w, schema_of(ORDERS))  # the schema lacks CUSTOMERS
    assert [type(e).__name__ for e in entries] == [
        "DecodedEntry",
        "SkippedEntry",
        "DecodedEntry",
        "SkippedEntry",
        "DecodedEntry",
    ]
    assert [e.mutation for e in entries if isinstance(e, DecodedEntry)] == [
        mutations[0],
        mutations[2],
        mutations[4],
    ]
    encoder = MutationEncoder(7)
    for entry, mutation, location in zip(entries, mutations, w.locations, strict=True):
        assert entry.entry_location == location
        if isinstance(entry, SkippedEntry):
            assert entry.reason == "unknown_table"
            assert entry.table_id == str(CUSTOMERS.id)
            # The raw payload is kept: the entry can be decoded later with a newer schema.
            assert entry.payload == encoder.encode(mutation)
            assert MutationDecoder(schema_of(CUSTOMERS), 7).decode(entry.payload) == mutation
    report = decoder.report
    assert report.unknown_tables == {str(CUSTOMERS.id): 2}
    assert (report.entries, report.decoded) == (5, 3)
    assert report.last_entry_location == w.locations[-1]
    assert not report.damaged


def test_capture_skips_other_tables_as_not_captured(tmp_path: Path) -> None:
    mutations = [
        Mutation((orders_update("ann", 1),)),
        Mutation((customers_update("ann"),)),
        Mutation((customers_update("bob"),)),
        Mutation((orders_update("bob", 2),)),
    ]
    key = bytes(range(16))
    w = write_segment(tmp_path, mutations, [1, 1, 0, 1], version=8, codec="encrypted", segment_id=3, key=key)
    entries, decoder = decode_all(w, schema_of(ORDERS, CUSTOMERS), capture={str(ORDERS.id)})
    assert [e.mutation for e in entries if isinstance(e, DecodedEntry)] == [mutations[0], mutations[3]]
    skipped = [e for e in entries if isinstance(e, SkippedEntry)]
    assert [(e.reason, e.table_id, e.entry_location) for e in skipped] == [
        ("not_captured", str(CUSTOMERS.id), w.locations[1]),
        ("not_captured", str(CUSTOMERS.id), w.locations[2]),
    ]
    assert (decoder.report.not_captured, decoder.report.decoded, decoder.report.entries) == (2, 2, 4)
    assert not decoder.report.unknown_tables


def test_unknown_table_is_counted_even_when_capturing_others(tmp_path: Path) -> None:
    """An id the schema lacks is reported as unknown (Cassandra counts it), not as not captured."""
    mutations = [
        Mutation((orders_update("ann", 1),)),
        Mutation((customers_update("ann"),)),
        Mutation((orders_update("bob", 2),)),
    ]
    w = write_segment(tmp_path, mutations, [1, 0, 0], version=6, codec="lz4", segment_id=4)
    entries, decoder = decode_all(w, schema_of(ORDERS), capture={str(ORDERS.id)})
    assert [e.mutation for e in entries if isinstance(e, DecodedEntry)] == [mutations[0], mutations[2]]
    assert [(e.reason, e.table_id) for e in entries if isinstance(e, SkippedEntry)] == [
        ("unknown_table", str(CUSTOMERS.id))
    ]
    assert decoder.report.unknown_tables == {str(CUSTOMERS.id): 1}
    assert decoder.report.not_captured == 0


def test_dropped_column_cells_at_or_before_the_drop_are_discarded(tmp_path: Path) -> None:
    """Cassandra's ``isDropped``: cells and complex deletions with timestamp ≤ drop time vanish."""
    dropped_at = TS + 10
    table = Table(
        "ks",
        "t",
        uuid.UUID("00000000-0000-0000-0000-0000000000cc"),
        [
            Column("k", NativeType("int"), ColumnKind.PARTITION_KEY),
            Column("c", NativeType("int"), ColumnKind.CLUSTERING),
            Column("v", NativeType("text"), ColumnKind.REGULAR),
        ],
        {
            "old": DroppedColumn("old", NativeType("text"), dropped_at),
            "gone": DroppedColumn("gone", ListType(NativeType("int")), dropped_at),
            "gone_static": DroppedColumn("gone_static", NativeType("int"), dropped_at, ColumnKind.STATIC),
        },
    )
    old = table.dropped["old"].as_column()
    gone = table.dropped["gone"].as_column()
    gone_static = table.dropped["gone_static"].as_column()
    key = serialize(NativeType("int"), 1)

    def clustering(n: int) -> tuple[bytes | None, ...]:
        return (serialize(NativeType("int"), n),)

    path = bytes(16)
    static = Row((), data=(Cell(gone_static, dropped_at, b"\x00\x00\x00\x07"),), is_static=True)
    rows = (
        # Only dropped data, all at or before the drop: the row disappears.
        Row(clustering(1), data=(Cell(old, dropped_at, b"x"),)),
        # The newer cell survives, the older one and the old complex deletion do not.
        Row(
            clustering(2),
            data=(
                Cell(old, dropped_at + 1, b"y"),
                ComplexColumn(
                    gone,
                    DeletionTime(dropped_at, 5),
                    (Cell(gone, dropped_at - 1, b"\x00\x00\x00\x01", path=path),),
                ),
            ),
        ),
        # A newer complex deletion survives alone.
        Row(
            clustering(3),
            liveness=Liveness(TS),
            data=(ComplexColumn(gone, DeletionTime(dropped_at + 1, 5), ()),),
        ),
    )
    mutation = Mutation((PartitionUpdate(table, key, static_row=static, unfiltereds=rows),))
    w = write_segment(tmp_path, [mutation], [0], version=7, codec=None, segment_id=5)
    entries, _ = decode_all(w, schema_of(table))
    assert isinstance(entries[0], DecodedEntry)
    # The static row held only a cell of a dropped static column written at the drop: gone.
    assert entries[0].mutation.updates[0].static_row is None
    got = entries[0].mutation.updates[0].rows
    assert [r.clustering for r in got] == [clustering(2), clustering(3)]
    assert got[0].data == (Cell(old, dropped_at + 1, b"y"),)
    assert got[1].data == (ComplexColumn(gone, DeletionTime(dropped_at + 1, 5), ()),)
    assert entries[0].mutation == cst.expected_decoded(mutation)


def _wide_table() -> Table:
    columns = [
        Column("k", NativeType("int"), ColumnKind.PARTITION_KEY),
        Column("c", NativeType("int"), ColumnKind.CLUSTERING),
    ]
    columns += [Column(f"v{i:02d}", NativeType("int"), ColumnKind.REGULAR) for i in range(70)]
    return Table("ks", "wide", uuid.UUID("00000000-0000-0000-0000-0000000000dd"), columns)


@pytest.mark.parametrize(
    ("present", "variant"),
    [
        (range(3), "present"),  # 3 of 70 < 35: indexes of the present columns
        (range(34), "present"),
        (range(35), "missing"),  # 35 of 70 ≥ 35: indexes of the missing columns
        (range(0, 70, 2), "missing"),
        (range(1, 69), "missing"),
        ((), "present"),
    ],
)
def test_large_column_subsets(present: range | tuple[int, ...], variant: str, tmp_path: Path) -> None:
    """``Columns.serializeLargeSubset`` for ≥ 64 header columns, both variants, read back."""
    table = _wide_table()
    regular = sorted(table.regular, key=column_sort_key)
    full = Row(
        (serialize(NativeType("int"), 0),),
        data=tuple(Cell(c, TS, serialize(NativeType("int"), i)) for i, c in enumerate(regular)),
    )
    subset = Row(
        (serialize(NativeType("int"), 1),),
        liveness=Liveness(TS),
        data=tuple(Cell(regular[i], TS, serialize(NativeType("int"), i)) for i in present),
    )
    encoded = encode_subset(list(present), 70)
    count, pos = read_uvint(encoded, 0)
    assert count == 70 - len(present)
    listed = []
    while pos < len(encoded):
        value, pos = read_uvint(encoded, pos)
        listed.append(value)
    assert listed == (list(present) if variant == "present" else [i for i in range(70) if i not in present])
    mutation = Mutation(
        (PartitionUpdate(table, serialize(NativeType("int"), 9), unfiltereds=(full, subset)),)
    )
    w = write_segment(tmp_path, [mutation], [1], version=7, codec=None, segment_id=11)
    entries, _ = decode_all(w, schema_of(table))
    assert [e.mutation for e in entries if isinstance(e, DecodedEntry)] == [mutation]


def test_row_timestamp_and_ttl_flags_are_used(tmp_path: Path) -> None:
    """Cells sharing the row's timestamp/TTL are written with USE_ROW_TIMESTAMP/USE_ROW_TTL."""
    table = CUSTOMERS
    mutation = Mutation((customers_update("zed"),))
    payload = MutationEncoder(7).encode(mutation)
    w = write_segment(tmp_path, [mutation], [0], version=7, codec=None, segment_id=2)
    reader = SegmentReader(w.path)
    frames = [f for f in reader.frames()]
    assert [getattr(f, "payload", None) for f in frames] == [payload]
    # The email cell's flags byte follows its row header; find it by its value.
    email_at = payload.index(b"a@example.org")
    flags = payload[email_at - 2]  # flags, then the value length (no timestamp, TTL or expiry)
    assert flags & CELL_USE_ROW_TIMESTAMP and flags & CELL_USE_ROW_TTL
    entries, _ = decode_all(w, schema_of(table))
    assert [e.mutation for e in entries if isinstance(e, DecodedEntry)] == [mutation]


def test_udt_and_list_cell_paths(tmp_path: Path) -> None:
    udt = UserType("ks", "addr", ("street", "zip"), (NativeType("text"), NativeType("int")))
    table = Table(
        "ks",
        "people",
        uuid.UUID("00000000-0000-0000-0000-0000000000ee"),
        [
            Column("id", NativeType("uuid"), ColumnKind.PARTITION_KEY),
            Column("home", udt, ColumnKind.REGULAR),
            Column("visits", ListType(NativeType("timestamp")), ColumnKind.REGULAR),
        ],
    )
    home, visits = table.column("home"), table.column("visits")
    cell_id = uuid.uuid1(node=1, clock_seq=2).bytes
    row = Row(
        (),
        data=(
            ComplexColumn(
                home,
                None,
                (
                    Cell(home, TS, b"Main St", path=(0).to_bytes(2, "big")),
                    Cell(home, TS, b"", 0, 1_700_000_000, (1).to_bytes(2, "big")),  # zip set to null
                ),
            ),
            ComplexColumn(
                visits,
                DeletionTime(TS - 1, 1_700_000_000),
                (Cell(visits, TS, serialize(NativeType("timestamp"), 5), path=cell_id),),
            ),
        ),
    )
    mutation = Mutation((PartitionUpdate(table, uuid.UUID(int=1).bytes, unfiltereds=(row,)),))
    w = write_segment(tmp_path, [mutation], [0], version=8, codec="snappy", segment_id=12)
    entries, _ = decode_all(w, schema_of(table))
    assert [e.mutation for e in entries if isinstance(e, DecodedEntry)] == [mutation]


def test_multi_byte_lengths_counts_and_null_clustering(tmp_path: Path) -> None:
    """Lengths, counts and clustering headers of 128 and more take multi-byte VInts."""
    long_name = "é" * 70  # 140 name bytes
    text = NativeType("text")
    table = Table(
        "ks",
        "big",
        uuid.UUID("00000000-0000-0000-0000-0000000000ff"),
        [
            Column("k", text, ColumnKind.PARTITION_KEY),
            *(Column(f"c{i}", text, ColumnKind.CLUSTERING, i) for i in range(4)),
            Column(long_name, text, ColumnKind.REGULAR),
            Column("s", SetType(text), ColumnKind.REGULAR),
        ],
    )
    big, s = table.column(long_name), table.column("s")
    elements = sorted({f"{i:04d}".encode() for i in range(130)} | {b"x" * 200})
    row = Row(
        # The 4th value is null: its header bit is 7, so the header VInt takes two bytes.
        (b"a" * 200, b"", b"b", None),
        liveness=Liveness(TS),
        data=(
            Cell(big, TS, b"v" * 300),
            ComplexColumn(
                s, DeletionTime(TS - 1, 1_700_000_000), tuple(Cell(s, TS, b"", path=e) for e in elements)
            ),
        ),
    )
    mutation = Mutation((PartitionUpdate(table, b"k" * 200, unfiltereds=(row,)),))
    w = write_segment(tmp_path, [mutation], [1], version=7, codec="deflate", segment_id=13)
    entries, _ = decode_all(w, schema_of(table))
    assert [e.mutation for e in entries if isinstance(e, DecodedEntry)] == [mutation]


def test_row_ttl_flag_without_a_timestamp_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``UnfilteredSerializer`` reads a row's TTL and expiry only after its timestamp: a TTL
    flag alone is ignored (no writer sets it, but a reader must not fail on it)."""
    from cdc_platform.commitlog.mutation import HAS_TIMESTAMP, HAS_TTL

    table = Table(
        "ks",
        "ttl_flag",
        uuid.UUID("00000000-0000-0000-0000-0000000000f1"),
        [
            Column("k", NativeType("int"), ColumnKind.PARTITION_KEY),
            Column("v", NativeType("int"), ColumnKind.REGULAR),
        ],
    )
    row = Row((), data=(Cell(table.column("v"), TS, serialize(NativeType("int"), 7)),))
    mutation = Mutation((PartitionUpdate(table, serialize(NativeType("int"), 1), unfiltereds=(row,)),))
    real = MutationEncoder._row
    flagged: list[int] = []

    def with_ttl_flag(self: MutationEncoder, *args: object, **kwargs: object) -> bytes:
        out = real(self, *args, **kwargs)  # type: ignore[arg-type]
        assert not out[0] & (HAS_TIMESTAMP | HAS_TTL)  # the premise: no liveness written
        flagged.append(out[0] | HAS_TTL)
        return bytes((flagged[-1],)) + out[1:]

    monkeypatch.setattr(MutationEncoder, "_row", with_ttl_flag)
    w = write_segment(tmp_path, [mutation], [0], version=7, codec=None, segment_id=3)
    assert flagged
    entries, _ = decode_all(w, schema_of(table))
    assert [e.mutation for e in entries if isinstance(e, DecodedEntry)] == [mutation]
