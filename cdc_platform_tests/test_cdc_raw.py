"""Listing cdc_raw, durability per Cassandra version, retirement to an archive."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cdc_platform import cdc_raw


def write(directory: Path, name: str, content: str | bytes = b"x" * 100) -> Path:
    p = directory / name
    if isinstance(content, str):
        p.write_text(content)
    else:
        p.write_bytes(content)
    return p


def test_scan_reads_durability_as_cassandra_writes_it(tmp_path: Path) -> None:
    write(tmp_path, "CommitLog-7-10.log")
    write(tmp_path, "CommitLog-7-10_cdc.idx", "4096")
    write(tmp_path, "CommitLog-7-11.log")
    write(tmp_path, "CommitLog-7-11-CDC.idx", "8192\nCOMPLETED")  # the 4.0 betas' spelling
    write(tmp_path, "CommitLog-7-12.log")  # linked, nothing synced yet
    write(tmp_path, "CommitLog-6-9.log")  # 3.x: linked when finished, no index
    write(tmp_path, "CommitLog-7-13.log")
    write(tmp_path, "CommitLog-7-13_cdc.idx", "")  # caught mid-rewrite
    write(tmp_path, "CommitLog-7-14.log")
    write(tmp_path, "CommitLog-7-14_cdc.idx", "12\nGARBAGE")
    write(tmp_path, "notes.txt", "ignored")
    states = {s.segment_id: s for s in cdc_raw.scan("n1", tmp_path)}
    assert [s.segment_id for s in cdc_raw.scan("n1", tmp_path)] == [9, 10, 11, 12, 13, 14]
    assert (states[10].durable, states[10].completed) == (4096, False)
    # COMPLETED: read to the end (after a crash replay the offset is the file length, not a
    # logical position of a compressed segment).
    assert (states[11].durable, states[11].completed) == (None, True)
    assert (states[12].durable, states[12].completed, states[12].has_durable_data) == (0, False, False)
    assert (states[9].durable, states[9].completed, states[9].has_durable_data) == (None, True, True)
    assert states[13].durable == 0 and states[13].index_error is None
    assert states[14].index_error and "GARBAGE" in states[14].index_error
    assert states[10].key == "n1:10" and states[10].size == 100


def test_partition_keys() -> None:
    assert cdc_raw.parse_partition_key(cdc_raw.partition_key("node_1", 1767225600000)) == (
        "node_1",
        1767225600000,
    )
    for bad in ("node1", "node1:", ":12", "node1:x"):
        with pytest.raises(ValueError, match="not <node>:<segment id>"):
            cdc_raw.parse_partition_key(bad)


def test_retire_to_the_archive_then_expire(tmp_path: Path) -> None:
    raw, archive = tmp_path / "cdc_raw", tmp_path / "archive"
    raw.mkdir()
    write(raw, "CommitLog-7-10.log")
    write(raw, "CommitLog-7-10_cdc.idx", "100\nCOMPLETED")
    (state,) = cdc_raw.scan("n1", raw)
    dest = cdc_raw.retire(state, "archive", archive)
    assert dest == archive / "n1" / "CommitLog-7-10.log" and dest.exists()
    assert (archive / "n1" / "CommitLog-7-10_cdc.idx").exists() and list(raw.iterdir()) == []
    assert cdc_raw.find_segment([raw, archive / "n1"], 10) == dest
    now = time.time()
    assert cdc_raw.expired_archives(archive, "n1", 3600, now) == []
    os.utime(dest, (now - 7200, now - 7200))
    assert cdc_raw.expired_archives(archive, "n1", 3600, now) == [dest]
    cdc_raw.delete_archived(dest)
    assert list((archive / "n1").iterdir()) == []


def test_retire_by_deleting(tmp_path: Path) -> None:
    write(tmp_path, "CommitLog-7-10.log")
    write(tmp_path, "CommitLog-7-10_cdc.idx", "100\nCOMPLETED")
    (state,) = cdc_raw.scan("n1", tmp_path)
    assert cdc_raw.retire(state, "delete", None) is None
    assert list(tmp_path.iterdir()) == []


def test_usage_counts_segment_bytes() -> None:
    states = [
        cdc_raw.SegmentState("n", i, 7, Path(f"CommitLog-7-{i}.log"), None, 1024 * 1024, 0, False, 0)
        for i in range(3)
    ]
    use = cdc_raw.usage(states, 4)
    assert (use.bytes_used, use.capacity_bytes, use.segments) == (3 << 20, 4 << 20, 3)
    assert use.fraction == 0.75


def test_scan_reads_only_index_files_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = Path.read_text

    def counting(self: Path, *args: object, **kwargs: object) -> str:
        reads.append(self.name)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", counting)
    old = time.time() - 10
    for i in (1, 2):
        write(tmp_path, f"CommitLog-7-{i}.log")
        write(tmp_path, f"CommitLog-7-{i}_cdc.idx", "100")
        os.utime(tmp_path / f"CommitLog-7-{i}_cdc.idx", (old, old))
    write(tmp_path, "CommitLog-7-3.log")
    write(tmp_path, "CommitLog-7-3_cdc.idx", "300")  # being written: modified just now

    assert [s.durable for s in cdc_raw.scan("n1", tmp_path)] == [100, 100, 300]
    reads.clear()
    assert [s.durable for s in cdc_raw.scan("n1", tmp_path)] == [100, 100, 300]
    assert reads == ["CommitLog-7-3_cdc.idx"]  # stable files are not read again; a fresh one is

    # Cassandra rewrites an index in place: a new time (or size) means a new read.
    write(tmp_path, "CommitLog-7-1_cdc.idx", "900\nCOMPLETED")
    reads.clear()
    states = cdc_raw.scan("n1", tmp_path)
    assert (states[0].durable, states[0].completed) == (None, True)
    assert "CommitLog-7-1_cdc.idx" in reads

    # A rewrite within the same clock tick as a read that was then too recent to trust.
    index = tmp_path / "CommitLog-7-3_cdc.idx"
    stamp = index.stat().st_mtime_ns
    index.write_text("301")
    os.utime(index, ns=(stamp, stamp))
    assert cdc_raw.scan("n1", tmp_path)[2].durable == 301


def test_a_completed_compressed_segment_is_read_to_its_end(tmp_path: Path) -> None:
    """After a crash replay Cassandra marks a segment ``COMPLETED`` with its file length, which
    for a compressed segment lies before the logical positions of its last entries."""
    import uuid

    from cdc_platform.commitlog.model import Cell, Liveness, Mutation, PartitionUpdate, Row
    from cdc_platform.commitlog.segment import DecodedEntry, SegmentDecoder
    from cdc_platform.commitlog.writer import SegmentWriter
    from cdc_platform.defs.assets import DecodeRange, _resolve_range
    from cdc_platform.schema.model import Column, ColumnKind, Schema, Table
    from cdc_platform.schema.types import native

    table = Table(
        "ks",
        "t",
        uuid.uuid4(),
        [
            Column("k", native("bigint"), ColumnKind.PARTITION_KEY),
            Column("v", native("blob"), ColumnKind.REGULAR),
        ],
    )
    schema = Schema()
    schema.add_table(table)
    writer = SegmentWriter(tmp_path, 1_700_000_000_000, compression="lz4", segment_size=1 << 20)
    for n in range(200):
        row = Row((), Liveness(1_000 + n), None, (Cell(table.column("v"), 1_000 + n, b"x" * 500),))
        writer.add(Mutation((PartitionUpdate(table, n.to_bytes(8, "big"), unfiltereds=(row,)),)))
    writer.close()
    size = writer.path.stat().st_size
    writer.index_path.write_text(f"{size}\nCOMPLETED")
    everything = [e for e in SegmentDecoder(writer.path, schema) if isinstance(e, DecodedEntry)]
    assert len(everything) == 200 and everything[-1].entry_location > size  # the premise

    (state,) = cdc_raw.scan("n1", tmp_path)
    assert (state.durable, state.completed) == (None, True)
    start, end, completed, _ = _resolve_range(writer.path, DecodeRange())
    assert (start, end, completed) == (0, None, True)
    read = [
        e for e in SegmentDecoder(writer.path, schema, start=start, end=end) if isinstance(e, DecodedEntry)
    ]
    assert len(read) == 200
