"""``_cdc.idx`` files: parsing, empty re-reads, both names, and reading a live segment up to them."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from cdc_platform.commitlog.cdc_index import (
    CdcIndex,
    CdcIndexError,
    cdc_index_path,
    parse_cdc_index,
    read_cdc_index,
    write_cdc_index,
)
from cdc_platform.commitlog.model import Cell, Liveness, Mutation, PartitionUpdate, Row
from cdc_platform.commitlog.segment import DecodedEntry, SegmentDecoder
from cdc_platform.commitlog.writer import SegmentWriter
from cdc_platform.schema.model import Column, ColumnKind, Schema, Table
from cdc_platform.schema.types import native


def test_parse() -> None:
    assert parse_cdc_index("1234") == CdcIndex(1234, False)
    assert parse_cdc_index("1234\nCOMPLETED") == CdcIndex(1234, True)
    assert parse_cdc_index("1234\nCOMPLETED\n") == CdcIndex(1234, True)
    for bad in ("", "abc", "-5", "12\nDONE", "12\nCOMPLETED\nmore"):
        with pytest.raises(CdcIndexError):
            parse_cdc_index(bad)


def test_read_to() -> None:
    """COMPLETED means the end of the file (after a crash replay the offset is the file length)."""
    assert parse_cdc_index("4096").read_to == 4096
    assert parse_cdc_index("4096\nCOMPLETED").read_to is None
    assert parse_cdc_index("0\nCOMPLETED").read_to == 0  # nothing durable


def test_write_is_exactly_what_cassandra_writes(tmp_path: Path) -> None:
    p = tmp_path / "CommitLog-7-1_cdc.idx"
    write_cdc_index(p, 4096)
    assert p.read_bytes() == b"4096"
    write_cdc_index(p, 8192, completed=True)
    assert p.read_bytes() == b"8192\nCOMPLETED"


def test_empty_file_is_read_again(tmp_path: Path) -> None:
    p = tmp_path / "CommitLog-7-1_cdc.idx"
    p.write_text("")

    def later() -> None:
        time.sleep(0.03)
        p.write_text("777")

    t = threading.Thread(target=later)
    t.start()
    try:
        assert read_cdc_index(p, retries=50, delay=0.01) == CdcIndex(777, False)
    finally:
        t.join()
    p.write_text("")
    assert read_cdc_index(p, retries=2, delay=0.001) is None
    assert read_cdc_index(tmp_path / "absent_cdc.idx") is None


def test_both_index_names_are_found(tmp_path: Path) -> None:
    seg = tmp_path / "CommitLog-7-42.log"
    seg.write_bytes(b"")
    assert cdc_index_path(seg) is None
    (tmp_path / "CommitLog-7-42-CDC.idx").write_text("5")
    assert cdc_index_path(seg) == tmp_path / "CommitLog-7-42-CDC.idx"
    (tmp_path / "CommitLog-7-42_cdc.idx").write_text("6")
    assert cdc_index_path(seg) == tmp_path / "CommitLog-7-42_cdc.idx"


def _schema() -> tuple[Schema, Table]:
    table = Table(
        "ks",
        "t",
        uuid.uuid4(),
        [
            Column("k", native("bigint"), ColumnKind.PARTITION_KEY),
            Column("v", native("int"), ColumnKind.REGULAR),
        ],
    )
    schema = Schema()
    schema.add_table(table)
    return schema, table


@pytest.mark.parametrize("compression", [None, "lz4"])
def test_live_segment_is_read_up_to_the_durable_offset(tmp_path: Path, compression: str | None) -> None:
    """A segment growing in real time: each read up to the idx offset yields exactly the synced entries."""
    schema, table = _schema()
    v = table.column("v")
    writer = SegmentWriter(tmp_path, 1_700_000_000_000, compression=compression, segment_size=1 << 20)
    written: list[Mutation] = []
    consumed = 0  # resume position, as a consumer checkpoints it
    seen: list[Mutation] = []
    for step in range(5):
        for i in range(10):
            n = step * 10 + i
            row = Row((), Liveness(1_000 + n), None, (Cell(v, 1_000 + n, n.to_bytes(4, "big")),))
            m = Mutation((PartitionUpdate(table, n.to_bytes(8, "big"), unfiltereds=(row,)),))
            writer.add(m)
            written.append(m)
        # Entries added but not yet synced are invisible to a durable reader.
        idx = read_cdc_index(writer.index_path)
        durable = idx.offset if idx else 0
        before = [
            e
            for e in SegmentDecoder(writer.path, schema, start=consumed, end=durable)
            if isinstance(e, DecodedEntry)
        ]
        assert not before
        writer.sync()
        idx = read_cdc_index(writer.index_path)
        assert idx is not None and not idx.completed
        batch = [
            e
            for e in SegmentDecoder(writer.path, schema, start=consumed, end=idx.offset)
            if isinstance(e, DecodedEntry)
        ]
        assert [e.mutation for e in batch] == written[step * 10 : step * 10 + 10]
        seen.extend(e.mutation for e in batch)
        consumed = batch[-1].entry_location
        assert consumed == idx.offset
    writer.close()
    idx = read_cdc_index(writer.index_path)
    assert idx is not None and idx.completed
    rest = [e for e in SegmentDecoder(writer.path, schema, start=consumed) if isinstance(e, DecodedEntry)]
    assert rest == []
    assert seen == written
