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

from cdc_platform.commitlog.cdc_index import CdcIndex, read_cdc_index
from cdc_platform.commitlog.compression import compress
from cdc_platform.commitlog.descriptor import encode_descriptor, read_descriptor, sync_marker_crc
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


def writer_for(directory: Path, codec: str | None, **options: int) -> SegmentWriter:
    """A 4 KiB segment of the test id; ``codec`` ``"encrypted"`` encrypts with the test key."""
    return SegmentWriter(
        directory,
        SEGMENT_ID,
        version=VERSION,
        compression=None if codec == "encrypted" else codec,
        encryption_key=KEY if codec == "encrypted" else None,
        iv=IV,
        segment_size=4096,
        **options,
    )


def build(directory: Path, codec: str | None, syncs_after: tuple[int, ...] = SYNCS_AFTER) -> Built:
    directory.mkdir(parents=True, exist_ok=True)
    writer = writer_for(directory, codec, chunk_length=48)  # several encrypted blocks per section
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


def repack(
    built: Built,
    contents: list[bytes],
    bodies: dict[int, bytes] | None = None,
    header: bytes | None = None,
) -> bytes:
    """The segment rebuilt from section contents (with valid markers), optionally with raw bodies
    or another descriptor header (the markers move with it)."""
    out = bytearray(built.data[: built.header_length] if header is None else header)
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


def deliverable(built: Built, cut: int) -> int:
    """How many entries a reader must deliver from a file cut at ``cut``: those of the whole sections.

    The section the cut falls in is never read, for every codec: either its marker is complete and
    points past the end of the file, where Cassandra's ``readSyncMarker`` stops the segment
    (CASSANDRA-20664), or fewer than 8 bytes of the marker are left, a normal end. (Until that was
    aligned with Cassandra, plain segments delivered the entries of a cut section that ended
    before the cut, and compressed ones could salvage a stream prefix.)
    """
    whole = [s for s in built.sections if s.file_end <= cut]
    return sum(1 for p in built.positions if any(s.logical_start <= p < s.logical_end for s in whole))


def cut_inside_a_section(built: Built, cut: int) -> bool:
    """The cut leaves a section holding entries incomplete but its 8-byte sync marker whole."""
    return any(s.file_start + 8 <= cut < s.file_end and s.data for s in built.sections)


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
def test_truncated_file_decodes_the_entries_of_whole_sections(
    segments: dict[str | None, Built], codec: str | None
) -> None:
    built = segments[codec]
    wrong: list[int] = []
    for cut in cut_points(built):
        items, report = decode(built, built.data[:cut])  # must not raise
        n = deliverable(built, cut)
        if (
            mutations_of(items) != MUTATIONS[:n]
            or [i.entry_location for i in items] != built.locations[:n]
            or any(d.kind != "truncated" for d in report.damaged)
        ):
            wrong.append(cut)
    assert not wrong, f"wrong entries for cuts at {ranges(wrong)}"


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
def test_cut_inside_a_section_is_reported_as_truncated(
    segments: dict[str | None, Built], codec: str | None
) -> None:
    """A cut after a section's marker and before its end loses that section: the report must say
    ``truncated`` (and nothing else)."""
    built = segments[codec]
    silent = []
    for cut in cut_points(built):
        if cut_inside_a_section(built, cut):
            _, report = decode(built, built.data[:cut])
            if not report.truncated or [d.kind for d in report.damaged] != ["truncated"]:
                silent.append(cut)
    assert not silent, f"cuts not reported as truncated: {ranges(silent)}"


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
@pytest.mark.parametrize("into_marker", range(1, 8))
def test_cut_inside_a_sync_marker_is_a_normal_end(
    segments: dict[str | None, Built], codec: str | None, into_marker: int
) -> None:
    """Fewer than 8 bytes left where a marker starts: Cassandra's ``readSyncMarker`` returns -1
    (offset > length - 8), the normal end of the segment, not a truncation."""
    built = segments[codec]
    cut = built.sections[1].file_start + into_marker
    items, report = decode(built, built.data[:cut])
    assert mutations_of(items) == MUTATIONS[:2]
    assert not report.damaged and not report.truncated


@pytest.mark.parametrize("codec", [c for c in CODECS if c is not None], ids=codec_id)
@pytest.mark.parametrize("into_header", [8, 10, 11])
def test_cut_inside_a_section_length_field_is_reported(
    segments: dict[str | None, Built], codec: str | None, into_header: int
) -> None:
    """The marker is whole and points past the end of the file: the segment stops there, truncated."""
    built = segments[codec]
    second = built.sections[1]
    items, report = decode(built, built.data[: second.file_start + into_header])
    assert mutations_of(items) == MUTATIONS[:2]
    assert report.truncated, f"file cut {into_header} bytes into the header of section 1 not reported"
    assert [(d.kind, d.position) for d in report.damaged] == [("truncated", second.logical_start)]


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
@pytest.mark.parametrize("trailing", [1, 4, 7])
def test_fewer_than_8_bytes_after_the_last_section_is_a_normal_end(
    segments: dict[str | None, Built], codec: str | None, trailing: int
) -> None:
    """No room for a marker after the last section: Cassandra ends the segment without error
    whatever those bytes are (they were reported as a truncated tail before)."""
    built = segments[codec]
    data = built.data[: built.sections[-1].file_end] + b"\xa5" * trailing
    items, report = decode(built, data)
    assert mutations_of(items) == MUTATIONS
    assert not report.damaged and not report.truncated


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
def test_valid_marker_pointing_past_the_end_of_the_file_stops_the_segment(
    segments: dict[str | None, Built], codec: str | None
) -> None:
    """A marker with a valid CRC whose end lies past the file: ``readSyncMarker`` rejects it and,
    since CASSANDRA-20664, the segment stops there. Nothing of that section is delivered (the
    reader used to clip the section to the end of the file and read what was there), and the
    cut is reported as a truncated tail, not raised."""
    built = segments[codec]
    third = built.sections[2]  # holds entry 4, then the closing section follows
    past = len(built.data) + 100
    damaged = with_bytes(built.data, third.file_start, struct.pack(">i", past))
    items, report = decode(built, damaged)
    assert mutations_of(items) == MUTATIONS[:4]
    assert report.truncated
    assert [(d.kind, d.position) for d in report.damaged] == [("truncated", third.logical_start)]
    assert str(past) in report.damaged[0].message
    sections = list(SegmentReader(built.path, damaged, key_provider=built.key_provider).sections())
    assert len(sections) == 3
    assert sections[-1].truncated and sections[-1].data == b""


# --------------------------------------------------------------------------------------------
# Live segments


@pytest.mark.parametrize("codec", CODECS, ids=codec_id)
@pytest.mark.parametrize(
    "marker",
    [struct.pack(">iI", 4000, 0), b"\xde\xad\xbe\xef\x01\x02\x03\x04"],
    ids=["end_set_crc_zero", "garbage"],
)
def test_reading_to_the_durable_offset_never_parses_the_marker_there(
    tmp_path: Path, codec: str | None, marker: bytes
) -> None:
    """Cassandra writes a marker's end and its CRC separately: while a sync is in progress the
    marker at the ``_cdc.idx`` offset can read as (end, 0) or garbage. A read bounded by that
    offset must stop before it instead of reporting a corrupt marker."""
    writer = writer_for(tmp_path, codec)
    locations = [writer.add(m) for m in MUTATIONS[:2]]
    writer.sync()
    locations += [writer.add(m) for m in MUTATIONS[2:4]]
    durable = writer.sync()
    assert read_cdc_index(writer.index_path) == CdcIndex(durable, False)
    data = bytearray(writer.path.read_bytes())
    # The next marker: at the durable offset in a plain (pre-sized) file, at the end of a
    # compressed or encrypted one (logical and file positions differ there).
    at = durable if codec is None else len(data)
    data[at : at + 8] = marker
    keys = RawKeyProvider(KEY)

    decoder = SegmentDecoder(writer.path, SCHEMA, end=durable, data=bytes(data), key_provider=keys)
    items = list(decoder)
    assert mutations_of(items) == MUTATIONS[:4]
    assert [i.entry_location for i in items] == locations
    assert not decoder.report.damaged and not decoder.report.truncated
    resumed = SegmentDecoder(
        writer.path, SCHEMA, start=locations[1], end=durable, data=bytes(data), key_provider=keys
    )
    assert mutations_of(list(resumed)) == MUTATIONS[2:4]
    # Unbounded, the same bytes are a corrupt marker: the bound is what keeps it out.
    with pytest.raises(CorruptSegmentError) as info:
        list(SegmentDecoder(writer.path, SCHEMA, data=bytes(data), key_provider=keys))
    assert info.value.position == at


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


# Sections [e0 e1] [e2 e3] [e4]: the last one holds an entry and ends exactly at the end of the file.
LAST_SECTION_HOLDS_AN_ENTRY = (0, 1, 0, 1, 0)


@pytest.fixture(scope="module")
def ending_with_entries(tmp_path_factory: pytest.TempPathFactory) -> dict[str | None, Built]:
    root = tmp_path_factory.mktemp("ending_with_entries")
    return {
        codec: build(root / codec_id(codec), codec, LAST_SECTION_HOLDS_AN_ENTRY)
        for codec in CODECS
        if codec is not None
    }


@pytest.mark.parametrize("codec", COMPRESSED)
def test_undecompressable_last_section_reaching_the_end_of_the_file_is_a_truncated_tail(
    ending_with_entries: dict[str | None, Built], codec: str
) -> None:
    """Cassandra's CompressedSegmenter tolerates errors in a section whose end is at or past the
    file length (``tolerateSegmentErrors``): reading ends there. The same damage in a section
    followed by another is an error (``test_garbage_in_a_complete_section_is_an_error``)."""
    built = ending_with_entries[codec]
    last = built.sections[-1]
    assert last.file_end == len(built.data) and last.data
    damaged = with_bytes(built.data, last.file_start + 12, bytes(last.file_end - last.file_start - 12))
    items, report = decode(built, damaged)
    assert mutations_of(items) == MUTATIONS[:4]
    assert report.truncated
    assert [(d.kind, d.position) for d in report.damaged] == [("truncated", last.logical_start)]


@pytest.mark.parametrize("codec", [c for c in CODECS if c is not None], ids=codec_id)
@pytest.mark.parametrize("offset", [0, 5], ids=["size", "size_crc"])
def test_bad_entry_frame_in_last_section_reaching_the_end_of_the_file_is_a_truncated_tail(
    ending_with_entries: dict[str | None, Built], codec: str | None, offset: int
) -> None:
    """A bad frame in a compressed or encrypted section ending at the end of the file is tolerated
    too (``toleratesErrorsInSection``); in an earlier section it stops the segment with an error
    (``test_damaged_entry_size_or_size_crc_is_an_error``)."""
    built = ending_with_entries[codec]
    damaged = flip_logical(built, built.positions[4] + offset, 0x01)
    items, report = decode(built, damaged)
    assert mutations_of(items) == MUTATIONS[:4]
    assert [(d.kind, d.position) for d in report.damaged] == [("truncated", built.positions[4])]


def test_last_encrypted_section_that_does_not_decrypt_is_still_an_error(
    ending_with_entries: dict[str | None, Built],
) -> None:
    """Cassandra decrypts in the EncryptedSegmenter's chunk provider, whose failure
    (``FSReadError``) escapes the tolerated errors: the read fails even at the end of the file.
    It also keeps a wrong key from passing for a truncated tail on a one-section segment."""
    built = ending_with_entries["encrypted"]
    last = built.sections[-1]
    damaged = with_bytes(built.data, last.file_start + 12, bytes(last.file_end - last.file_start - 12))
    items, error = decode_until_error(built, damaged, EncryptionError)
    assert mutations_of(items) == MUTATIONS[:4]
    assert_names_location(error, built, last.file_start)


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
    writer = writer_for(tmp_path, codec)
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


@pytest.mark.parametrize("name_version", [6, 8])
def test_file_name_version_is_not_compared(
    segments: dict[str | None, Built], tmp_path: Path, name_version: int
) -> None:
    """Cassandra compares only the segment id of the name with the header's; the header's
    version is the one used to read."""
    built = segments[None]
    path = tmp_path / f"CommitLog-{name_version}-{SEGMENT_ID}.log"
    path.write_bytes(built.data)
    decoder = SegmentDecoder(path, SCHEMA)
    assert mutations_of(list(decoder)) == MUTATIONS
    assert decoder.report.version == VERSION


@pytest.mark.parametrize(
    "params",
    [
        {"encKeyAlias": "testing:1"},
        {"encKeyAlias": "testing:1", "encIV": IV.hex()},
        {"encCipher": "AES/CBC/PKCS5Padding", "encIV": IV.hex()},
        {"encCipher": "AES/CBC/PKCS5Padding", "encKeyAlias": None, "encIV": IV.hex()},
    ],
    ids=["alias_only", "alias_and_iv", "cipher_and_iv", "null_alias"],
)
def test_encryption_needs_both_key_alias_and_cipher(
    segments: dict[str | None, Built], params: dict[str, object]
) -> None:
    """``EncryptionContext.createFromMap`` turns encryption on only when both ``encKeyAlias`` and
    ``encCipher`` are present: with one of them the segment is read as it is (here plain)."""
    built = segments[None]
    header = encode_descriptor(VERSION, SEGMENT_ID, params)
    assert read_descriptor(header).encryption is None
    data = repack(built, [s.data for s in built.sections], header=header)
    items, report = decode(built, data)
    assert mutations_of(items) == MUTATIONS
    assert not report.encrypted and not report.damaged


def test_encryption_parameters_are_taken_as_written() -> None:
    header = encode_descriptor(
        VERSION, SEGMENT_ID, {"encCipher": "AES/CBC/PKCS5Padding", "encKeyAlias": "", "encIV": IV.hex()}
    )
    enc = read_descriptor(header).encryption
    assert enc is not None
    assert (enc.cipher, enc.key_alias, enc.iv) == ("AES/CBC/PKCS5Padding", "", IV)


@pytest.mark.parametrize("iv", [None, IV[:8]], ids=["missing", "short"])
def test_encrypted_segment_without_a_usable_iv_is_an_encryption_error(
    segments: dict[str | None, Built], iv: bytes | None
) -> None:
    """Cassandra's ``getDecryptor`` refuses a context without an IV; ours says so as an
    :class:`EncryptionError` naming the segment, when the first section is to be decrypted."""
    built = segments["encrypted"]
    params = {"encCipher": "AES/CBC/PKCS5Padding", "encKeyAlias": "testing:1"}
    if iv is not None:
        params["encIV"] = iv.hex()
    header = encode_descriptor(VERSION, SEGMENT_ID, params)
    data = repack(built, [s.data for s in built.sections], header=header)
    decoder = SegmentDecoder(built.path, SCHEMA, data=data, key_provider=built.key_provider)
    assert decoder.report.encrypted
    with pytest.raises(EncryptionError, match="encIV") as info:
        list(decoder)
    assert decoder.report.decoded == 0
    assert_names_location(info.value, built, len(header))


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
