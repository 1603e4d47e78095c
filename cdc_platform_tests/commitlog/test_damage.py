"""Damaged segments are read the way Cassandra reads them (module docstring of ``segment.py``).

Truncated tails are read up to the cut and reported; a payload CRC failure skips one entry;
any other damage stops the segment with an error naming file, segment and position; no damage
ever makes the reader yield a mutation that was not written.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_platform.commitlog.compression import compress
from cdc_platform.commitlog.descriptor import encode_descriptor, sync_marker_crc
from cdc_platform.commitlog.encryption import RawKeyProvider, encrypt_section
from cdc_platform.commitlog.errors import (
    CommitLogError,
    CorruptSegmentError,
    DescriptorError,
    EncryptionError,
    SegmentIdMismatchError,
)
from cdc_platform.commitlog.model import (
    Cell,
    ComplexColumn,
    DeletionTime,
    Liveness,
    Mutation,
    PartitionUpdate,
    Row,
)
from cdc_platform.commitlog.segment import (
    DecodedEntry,
    ReadReport,
    Section,
    SegmentDecoder,
    SegmentReader,
    SkippedEntry,
)
from cdc_platform.commitlog.writer import MutationEncoder, SegmentWriter
from cdc_platform.schema.model import Column, ColumnKind, Schema, Table
from cdc_platform.schema.types import NativeType, SetType
from cdc_platform.schema.values import serialize

CODECS = (None, "lz4", "snappy", "deflate", "zstd", "encrypted")
COMPRESSED = ("lz4", "snappy", "deflate", "zstd")
CODEC_IDS = {None: "plain"}
VERSION = 7
SEGMENT_ID = 0x1234_5678_9ABC  # high and low 32-bit halves both non-zero
KEY = bytes(range(100, 116))
IV = bytes(range(16))
TS = 1_700_000_000_000_000

TABLE = Table(
    "ks",
    "events",
    uuid.UUID("6ab09bec-e68e-48d9-a5f8-97e6fb4c9b47"),
    [
        Column("id", NativeType("int"), ColumnKind.PARTITION_KEY),
        Column("seq", NativeType("bigint"), ColumnKind.CLUSTERING),
        Column("body", NativeType("text"), ColumnKind.REGULAR),
        Column("tags", SetType(NativeType("text")), ColumnKind.REGULAR),
    ],
)
SCHEMA = Schema()
SCHEMA.add_table(TABLE)

# Five entries; sync after the 2nd, 4th and 5th: sections [e0 e1] [e2 e3] [e4] and an empty
# closing section.
SYNCS_AFTER = (0, 1, 0, 1, 1)


def codec_id(codec: str | None) -> str:
    return codec or "plain"


def make_mutation(i: int) -> Mutation:
    tags = TABLE.column("tags")
    row = Row(
        (serialize(NativeType("bigint"), i),),
        liveness=Liveness(TS + i),
        data=(
            Cell(TABLE.column("body"), TS + i, f"event number {i}".encode()),
            ComplexColumn(
                tags,
                DeletionTime(TS + i - 1, 1_700_000_000),
                (Cell(tags, TS + i, b"", path=b"red"), Cell(tags, TS + i, b"", path=b"blue")),
            ),
        ),
    )
    return Mutation((PartitionUpdate(TABLE, serialize(NativeType("int"), i % 2), unfiltereds=(row,)),))


MUTATIONS = [make_mutation(i) for i in range(len(SYNCS_AFTER))]


@dataclass(frozen=True)
class Built:
    """A valid segment and everything needed to damage it precisely."""

    codec: str | None
    path: Path
    data: bytes  # the file, up to the end of its data (plain: through the zero end marker)
    header_length: int
    locations: list[int]  # entry_location (logical, just after the payload CRC)
    positions: list[int]  # logical entry starts
    payloads: list[bytes]
    sections: list[Section]
    close_offset: int

    @property
    def key_provider(self) -> RawKeyProvider | None:
        return RawKeyProvider(KEY) if self.codec == "encrypted" else None

    @property
    def plain(self) -> bool:
        return self.codec is None

    def section_of(self, logical: int) -> Section:
        return next(s for s in self.sections if s.logical_start <= logical < s.logical_end)


def build(directory: Path, codec: str | None, syncs_after: tuple[int, ...] = SYNCS_AFTER) -> Built:
    directory.mkdir(parents=True, exist_ok=True)
    writer = SegmentWriter(
        directory,
        SEGMENT_ID,
        version=VERSION,
        compression=None if codec == "encrypted" else codec,
        encryption_key=KEY if codec == "encrypted" else None,
        iv=IV,
        segment_size=4096,
        chunk_length=48,  # several encrypted blocks per section
    )
    locations = []
    for mutation, syncs in zip(MUTATIONS, syncs_after, strict=True):
        locations.append(writer.add(mutation))
        for _ in range(syncs):
            writer.sync()
    close_offset = writer.close()
    data = writer.path.read_bytes()
    if codec is None:
        data = data[: close_offset + 8]  # the rest of the pre-sized file is zeros
    encoder = MutationEncoder(VERSION)
    payloads = [encoder.encode(m) for m in MUTATIONS]
    sections = list(SegmentReader(writer.path, data, key_provider=RawKeyProvider(KEY)).sections())
    return Built(
        codec=codec,
        path=writer.path,
        data=data,
        header_length=writer.header_length,
        locations=locations,
        positions=[loc - 12 - len(p) for loc, p in zip(locations, payloads, strict=True)],
        payloads=payloads,
        sections=sections,
        close_offset=close_offset,
    )


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> dict[str | None, Built]:
    root = tmp_path_factory.mktemp("segments")
    return {codec: build(root / codec_id(codec), codec) for codec in CODECS}


def decode(built: Built, data: bytes) -> tuple[list[DecodedEntry | SkippedEntry], ReadReport]:
    decoder = SegmentDecoder(built.path, SCHEMA, data=data, key_provider=built.key_provider)
    return list(decoder), decoder.report


def decode_until_error(
    built: Built, data: bytes, error: type[CommitLogError]
) -> tuple[list[DecodedEntry | SkippedEntry], CommitLogError]:
    """Iterates until ``error`` is raised; returns what was yielded before it and the error."""
    items: list[DecodedEntry | SkippedEntry] = []
    decoder = SegmentDecoder(built.path, SCHEMA, data=data, key_provider=built.key_provider)
    with pytest.raises(error) as info:
        for item in decoder:
            items.append(item)
    return items, info.value


def mutations_of(items: list[DecodedEntry | SkippedEntry]) -> list[Mutation]:
    return [i.mutation for i in items if isinstance(i, DecodedEntry)]


def seal(built: Built, content: bytes) -> bytes:
    """A section body for ``content`` as the writer makes it."""
    if built.codec == "encrypted":
        return encrypt_section(content, KEY, IV, chunk_length=48)
    assert built.codec is not None
    if not content and built.codec == "deflate":
        return b""
    return compress(built.codec, content)


def repack(built: Built, contents: list[bytes], bodies: dict[int, bytes] | None = None) -> bytes:
    """The segment rebuilt from section contents (with valid markers), optionally with raw bodies."""
    out = bytearray(built.data[: built.header_length])
    for i, content in enumerate(contents):
        pos = len(out)
        crc = sync_marker_crc(SEGMENT_ID, pos)
        if built.plain:
            out += struct.pack(">iI", pos + 8 + len(content), crc) + content
        else:
            body = bodies[i] if bodies and i in bodies else seal(built, content)
            out += struct.pack(">iII", pos + 12 + len(body), crc, len(content)) + body
    if built.plain:
        out += bytes(8)
    return bytes(out)


def flip_logical(built: Built, logical: int, xor: int = 0x01) -> bytes:
    """The segment with the byte at a logical (uncompressed) position changed."""
    if built.plain:
        damaged = bytearray(built.data)
        damaged[logical] ^= xor
        return bytes(damaged)
    target = built.section_of(logical)
    contents = []
    for s in built.sections:
        content = bytearray(s.data)
        if s is target:
            content[logical - s.logical_start] ^= xor
        contents.append(bytes(content))
    return repack(built, contents)


def with_bytes(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def ranges(values: list[int]) -> str:
    """``[3, 4, 5, 9]`` → ``"3-5, 9"`` for readable failure messages."""
    out: list[str] = []
    for v in values:
        if out and int(out[-1].split("-")[-1]) == v - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        else:
            out.append(str(v))
    return ", ".join(out)


def assert_names_location(error: CommitLogError, built: Built, position: int) -> None:
    message = str(error)
    assert str(built.path) in message
    assert f"segment {SEGMENT_ID}" in message
    assert f"position {position}" in message
    assert (error.path, error.segment_id, error.position) == (str(built.path), SEGMENT_ID, position)


# --------------------------------------------------------------------------------------------
# The test segments and helpers themselves


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
def test_intact_segments_decode_and_repack_identically(
    segments: dict[str | None, Built], codec: str | None
) -> None:
    built = segments[codec]
    items, report = decode(built, built.data)
    assert mutations_of(items) == MUTATIONS
    assert [i.entry_location for i in items] == built.locations
    assert [i.position for i in items] == built.positions
    assert not report.damaged and not report.truncated
    # Four sections: [e0 e1] [e2 e3] [e4] and the empty closing one.
    assert [
        len([p for p in built.positions if s.logical_start <= p < s.logical_end]) for s in built.sections
    ] == [2, 2, 1, 0]
    assert repack(built, [s.data for s in built.sections]) == built.data


# --------------------------------------------------------------------------------------------
# Truncation


def cut_points(built: Built) -> range:
    return range(built.header_length, len(built.data) + 1)


def deliverable(built: Built, cut: int) -> tuple[int, int]:
    """How many entries a reader must (at least) and may (at most) deliver from a file cut at ``cut``.

    Plain: exactly the entries ending at or before the cut. Compressed/encrypted: at least the
    entries of the sections that are whole (Cassandra gives up on a damaged last section), at
    most also those of the section the cut falls in (a reader may salvage a stream prefix).
    """
    if built.plain:
        n = sum(1 for loc in built.locations if loc <= cut)
        return n, n
    whole = [s for s in built.sections if s.file_end <= cut]
    reached = [s for s in built.sections if s.file_start < cut]

    def count(sections: list[Section]) -> int:
        return sum(1 for p in built.positions if any(s.logical_start <= p < s.logical_end for s in sections))

    return count(whole), count(reached)


def strictly_inside(built: Built, cut: int) -> bool:
    """The cut falls inside an entry (plain) or inside a section holding entries (compressed)."""
    if built.plain:
        return any(p < cut < loc for p, loc in zip(built.positions, built.locations, strict=True))
    return any(s.file_start < cut < s.file_end and s.data for s in built.sections)


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
def test_truncated_file_decodes_every_entry_before_the_cut(
    segments: dict[str | None, Built], codec: str | None
) -> None:
    built = segments[codec]
    wrong: list[int] = []
    for cut in cut_points(built):
        items, report = decode(built, built.data[:cut])  # must not raise
        at_least, at_most = deliverable(built, cut)
        n = len(items)
        if (
            not at_least <= n <= at_most
            or mutations_of(items) != MUTATIONS[:n]
            or [i.entry_location for i in items] != built.locations[:n]
            or any(d.kind != "truncated" for d in report.damaged)
        ):
            wrong.append(cut)
    assert not wrong, f"wrong entries for cuts at {ranges(wrong)}"


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
def test_truncation_inside_an_entry_is_reported(segments: dict[str | None, Built], codec: str | None) -> None:
    """A cut inside an entry (or inside a compressed section holding entries, its 12-byte header
    included) loses data: the report must say ``truncated``."""
    built = segments[codec]
    silent = [
        cut
        for cut in cut_points(built)
        if strictly_inside(built, cut) and not decode(built, built.data[:cut])[1].truncated
    ]
    assert not silent, f"cuts not reported as truncated: {ranges(silent)}"


@pytest.mark.parametrize("codec", [c for c in CODECS if c is not None], ids=codec_id)
@pytest.mark.parametrize("into_header", [4, 10], ids=["in_marker", "in_length"])
def test_truncation_inside_a_section_header_is_reported(
    segments: dict[str | None, Built], codec: str | None, into_header: int
) -> None:
    built = segments[codec]
    second = built.sections[1]
    cut = second.file_start + into_header
    items, report = decode(built, built.data[:cut])
    assert mutations_of(items) == MUTATIONS[:2]
    assert report.truncated, f"file cut {into_header} bytes into the header of section 1 not reported"


# --------------------------------------------------------------------------------------------
# Entry framing


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
@pytest.mark.parametrize("where", ["payload_start", "payload_end", "payload_crc"])
def test_payload_crc_failure_skips_exactly_that_entry(
    segments: dict[str | None, Built], codec: str | None, where: str
) -> None:
    built = segments[codec]
    victim = 2
    start = built.positions[victim]
    offset = {
        "payload_start": start + 8,
        "payload_end": built.locations[victim] - 5,
        "payload_crc": built.locations[victim] - 2,
    }[where]
    items, report = decode(built, flip_logical(built, offset, 0x40))
    assert [type(i).__name__ for i in items] == ["DecodedEntry"] * 2 + ["SkippedEntry"] + ["DecodedEntry"] * 2
    assert mutations_of(items) == [m for i, m in enumerate(MUTATIONS) if i != victim]
    assert [i.entry_location for i in items] == built.locations
    skipped = items[victim]
    assert isinstance(skipped, SkippedEntry)
    assert skipped.reason == "payload_crc"
    assert skipped.position == start
    expected_payload = bytearray(built.payloads[victim])
    if where != "payload_crc":
        expected_payload[offset - start - 8] ^= 0x40
    assert skipped.payload == bytes(expected_payload)
    assert [(d.kind, d.position, d.entry_location) for d in report.damaged] == [
        ("payload_crc", start, built.locations[victim])
    ]
    assert (report.entries, report.decoded, report.truncated) == (5, 4, False)
    assert report.last_entry_location == built.locations[-1]


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
@pytest.mark.parametrize("offset", range(8), ids=lambda o: ["size", "size_crc"][o // 4] + f"+{o % 4}")
def test_damaged_entry_size_or_size_crc_is_an_error(
    segments: dict[str | None, Built], codec: str | None, offset: int
) -> None:
    built = segments[codec]
    victim = 2
    damaged = flip_logical(built, built.positions[victim] + offset, 0x01)
    items, error = decode_until_error(built, damaged, CorruptSegmentError)
    assert mutations_of(items) == MUTATIONS[:victim]
    assert_names_location(error, built, built.positions[victim])


# --------------------------------------------------------------------------------------------
# Sync markers


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
@pytest.mark.parametrize("crc_byte", range(4))
def test_sync_marker_with_bad_crc_is_an_error(
    segments: dict[str | None, Built], codec: str | None, crc_byte: int
) -> None:
    built = segments[codec]
    marker = built.sections[1].file_start
    damaged = bytearray(built.data)
    damaged[marker + 4 + crc_byte] ^= 0x10
    items, error = decode_until_error(built, bytes(damaged), CorruptSegmentError)
    assert mutations_of(items) == MUTATIONS[:2]
    assert_names_location(error, built, marker)


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
def test_sync_marker_with_zero_crc_but_an_end_is_an_error(
    segments: dict[str | None, Built], codec: str | None
) -> None:
    """Only ``(0, 0)`` ends a segment; ``allow_ignore_sync_crc`` is off by default in Cassandra."""
    built = segments[codec]
    marker = built.sections[1].file_start
    damaged = with_bytes(built.data, marker + 4, bytes(4))
    _, error = decode_until_error(built, damaged, CorruptSegmentError)
    assert_names_location(error, built, marker)


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
def test_zero_sync_marker_ends_the_segment(segments: dict[str | None, Built], codec: str | None) -> None:
    built = segments[codec]
    marker = built.sections[1].file_start
    items, report = decode(built, with_bytes(built.data, marker, bytes(8)))
    assert mutations_of(items) == MUTATIONS[:2]
    assert not report.damaged and not report.truncated


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
@pytest.mark.parametrize("target", ["zero", "header", "previous_marker", "itself", "inside_own_header"])
def test_valid_crc_marker_pointing_backwards_is_an_error(
    segments: dict[str | None, Built], codec: str | None, target: str
) -> None:
    built = segments[codec]
    marker = built.sections[2].file_start
    end = {
        "zero": 0,
        "header": built.header_length,
        "previous_marker": built.sections[1].file_start,
        "itself": marker,
        "inside_own_header": marker + (7 if built.plain else 11),
    }[target]
    damaged = with_bytes(built.data, marker, struct.pack(">i", end))
    items, error = decode_until_error(built, damaged, CorruptSegmentError)
    assert mutations_of(items) == MUTATIONS[:4]
    assert_names_location(error, built, marker)


# --------------------------------------------------------------------------------------------
# Compressed and encrypted sections


@pytest.mark.parametrize("codec", [c for c in CODECS if c is not None], ids=codec_id)
def test_garbage_in_a_complete_section_is_an_error(
    segments: dict[str | None, Built], codec: str | None
) -> None:
    built = segments[codec]
    section = built.sections[1]
    body = section.file_end - section.file_start - 12
    damaged = with_bytes(built.data, section.file_start + 12, bytes([0xA5]) * body)
    items, error = decode_until_error(built, damaged, CorruptSegmentError)
    assert mutations_of(items) == MUTATIONS[:2]
    assert_names_location(error, built, section.file_start)


@pytest.mark.parametrize("codec", [c for c in CODECS if c is not None], ids=codec_id)
def test_section_whose_length_field_says_zero_does_not_lose_entries_silently(
    segments: dict[str | None, Built], codec: str | None
) -> None:
    """No CRC covers a section's uncompressed length. Zeroed on a section that holds entries,
    the reader must decode them, report damage or raise, never skip them without a word."""
    built = segments[codec]
    section = built.sections[1]
    damaged = with_bytes(built.data, section.file_start + 8, bytes(4))
    decoder = SegmentDecoder(built.path, SCHEMA, data=damaged, key_provider=built.key_provider)
    items: list[DecodedEntry | SkippedEntry] = []
    raised = False
    try:
        for item in decoder:
            items.append(item)
    except CorruptSegmentError as exc:
        raised = True
        assert_names_location(exc, built, section.file_start)
    decoded = mutations_of(items)
    assert decoded == MUTATIONS[: len(decoded)] or decoded == [
        m for i, m in enumerate(MUTATIONS) if i not in (2, 3)
    ]
    lost = len(MUTATIONS) - len(decoded)
    assert not lost or raised or decoder.report.damaged, (
        f"{lost} entries of section 1 vanished without an error or a damage report"
    )


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
def test_empty_closing_section_reads_fine(segments: dict[str | None, Built], codec: str | None) -> None:
    built = segments[codec]
    closing = built.sections[-1]
    assert closing.data == b"" and closing.logical_start == closing.logical_end == built.close_offset
    if codec == "deflate":
        # Deflate closes with no payload bytes at all.
        assert closing.file_end - closing.file_start == 12
    items, report = decode(built, built.data)
    assert mutations_of(items) == MUTATIONS
    assert not report.damaged and not report.truncated


@pytest.mark.parametrize("codec", COMPRESSED)
def test_closing_section_holding_an_empty_stream_reads_fine(
    segments: dict[str | None, Built], codec: str
) -> None:
    """A closing section may carry the compressor's output for nothing (an empty zlib stream)."""
    built = segments[codec]
    empty_stream = zlib.compress(b"") if codec == "deflate" else compress(codec, b"")
    assert empty_stream
    damaged = repack(built, [s.data for s in built.sections], {len(built.sections) - 1: empty_stream})
    items, report = decode(built, damaged)
    assert mutations_of(items) == MUTATIONS
    assert not report.damaged and not report.truncated


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
def test_segment_without_entries(tmp_path: Path, codec: str | None) -> None:
    writer = SegmentWriter(
        tmp_path,
        SEGMENT_ID,
        version=VERSION,
        compression=None if codec == "encrypted" else codec,
        encryption_key=KEY if codec == "encrypted" else None,
        segment_size=4096,
    )
    close_offset = writer.close()
    decoder = SegmentDecoder(writer.path, SCHEMA, key_provider=RawKeyProvider(KEY))
    assert list(decoder) == []
    report = decoder.report
    assert (report.entries, report.truncated, report.damaged) == (0, False, [])
    assert close_offset == writer.header_length + 8


# --------------------------------------------------------------------------------------------
# Descriptor and file name


@pytest.mark.parametrize("offset", [0, 3, 4, 8, 11, 12, 13, 14, -1, -4])
def test_descriptor_crc_mismatch(segments: dict[str | None, Built], offset: int) -> None:
    built = segments["lz4"]  # non-empty parameters
    at = offset if offset >= 0 else built.header_length + offset
    damaged = bytearray(built.data)
    damaged[at] ^= 0x02
    with pytest.raises(DescriptorError) as info:
        SegmentDecoder(built.path, SCHEMA, data=bytes(damaged))
    assert str(built.path) in str(info.value)


@pytest.mark.parametrize("size", [0, 1, 11, 17, -5, -1])
def test_descriptor_too_short(segments: dict[str | None, Built], size: int) -> None:
    built = segments["zstd"]
    length = size if size >= 0 else built.header_length + size
    with pytest.raises(DescriptorError) as info:
        SegmentDecoder(built.path, SCHEMA, data=built.data[:length])
    assert str(built.path) in str(info.value)


@pytest.mark.parametrize("version", [5, 9, -1])
def test_unsupported_version(tmp_path: Path, version: int) -> None:
    header = encode_descriptor(version, SEGMENT_ID, {})
    data = header + struct.pack(">iI", len(header) + 8, sync_marker_crc(SEGMENT_ID, len(header))) + bytes(8)
    path = tmp_path / f"CommitLog-{max(version, 0)}-{SEGMENT_ID}.log"
    with pytest.raises(DescriptorError) as info:
        SegmentDecoder(path, SCHEMA, data=data)
    assert f"version {version}" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "name",
    [
        f"CommitLog-7-{SEGMENT_ID + 1}.log",
        f"CommitLog-7-{SEGMENT_ID - (1 << 32)}.log",
        f"CommitLog-6-{SEGMENT_ID}.log",
    ],
)
def test_file_name_disagreeing_with_header(
    segments: dict[str | None, Built], tmp_path: Path, name: str
) -> None:
    built = segments[None]
    path = tmp_path / name
    path.write_bytes(built.data)
    with pytest.raises(SegmentIdMismatchError) as info:
        SegmentDecoder(path, SCHEMA)
    message = str(info.value)
    assert str(SEGMENT_ID) in message and str(path) in message
    assert not isinstance(info.value, DescriptorError)


# --------------------------------------------------------------------------------------------
# Encryption keys


@pytest.mark.parametrize(
    "provider",
    [None, RawKeyProvider(bytes(16)), RawKeyProvider(bytes(range(32))), RawKeyProvider({"other": KEY})],
    ids=["no_key", "wrong_key", "wrong_aes256_key", "unknown_alias"],
)
def test_encrypted_segment_without_the_right_key(
    segments: dict[str | None, Built], provider: RawKeyProvider | None
) -> None:
    built = segments["encrypted"]
    decoder = SegmentDecoder(built.path, SCHEMA, data=built.data, key_provider=provider)
    with pytest.raises(EncryptionError) as info:
        list(decoder)
    assert not decoder.report.truncated
    assert decoder.report.decoded == 0
    assert_names_location(info.value, built, built.header_length)


def test_encrypted_segment_with_key_per_alias(segments: dict[str | None, Built]) -> None:
    built = segments["encrypted"]
    decoder = SegmentDecoder(
        built.path, SCHEMA, data=built.data, key_provider=RawKeyProvider({"TESTING:1": KEY})
    )
    assert mutations_of(list(decoder)) == MUTATIONS


# --------------------------------------------------------------------------------------------
# Fuzzing


damage_ops = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 16), st.integers(1, 16)),
)


def apply_damage(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, where, arg in ops:
        at = where % (len(out) + 1)
        if op == "flip" and at < len(out):
            out[at] ^= arg
        elif op == "truncate":
            del out[at:]
        elif op == "insert":
            out[at:at] = bytes([arg]) * (1 + arg % 5)
        elif op == "delete":
            del out[at : at + arg]
    return bytes(out)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(codec=st.sampled_from(CODECS), ops=st.lists(damage_ops, min_size=1, max_size=4))
def test_damage_fuzz(
    segments: dict[str | None, Built], codec: str | None, ops: list[tuple[str, int, int]]
) -> None:
    """Whatever the damage: only commit log errors, and never a mutation that was not written."""
    built = segments[codec]
    damaged = apply_damage(built.data, ops)
    items: list[DecodedEntry | SkippedEntry] = []
    try:
        for item in SegmentDecoder(built.path, SCHEMA, data=damaged, key_provider=built.key_provider):
            items.append(item)
    except CommitLogError:
        pass
    for item in items:
        if isinstance(item, DecodedEntry):
            assert item.mutation in MUTATIONS
        else:
            assert item.reason == "payload_crc"
