"""Reading a segment: descriptor, sync sections, entry framing, damage handling.

Positions are *logical*: offsets in the uncompressed image of the segment. For plain
segments they are file offsets; for compressed and encrypted ones each section's logical
start is the previous logical end plus the 8-byte marker. ``_cdc.idx`` offsets and the
resume position of every entry (``entryLocation``, just after its payload CRC) are logical.

Damage rules (as Cassandra's ``CommitLogReader``/``CommitLogSegmentReader``):

- a marker ``(0, 0)``, fewer than 8 bytes left for a marker (``readSyncMarker`` returns -1),
  an entry size of 0, or fewer than 4 bytes left in a section end the segment normally;
- a marker with a valid CRC whose end lies past the end of the file is a truncated tail: the
  segment stops at that marker, none of its section is read, and the cut is reported as damage
  (``readSyncMarker`` rejects such an end; CASSANDRA-20664 stops the segment there);
- in a compressed or encrypted segment, a section reaching the end of the file tolerates errors
  (``Segmenter.tolerateSegmentErrors``): a payload that does not decompress, a plaintext of the
  wrong length or a bad entry frame ends the segment there as a truncated tail. A section that
  does not decrypt is an error anywhere, as in Cassandra (its decryption failure is not an
  error the segment reader tolerates);
- a payload CRC failure skips that one entry, which is reported;
- anything else (bad marker CRC, impossible marker position, bad size or size CRC, an entry
  crossing its section, undecompressable data in a section followed by another) stops the
  segment with :class:`~cdc_platform.commitlog.errors.CorruptSegmentError` naming file, segment
  and position.

A bounded read (``end`` = the ``_cdc.idx`` durable offset) never parses a marker at or past
``end``: on a live segment that marker may be half written (Cassandra writes its end and its CRC
separately), which is not damage.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cdc_platform.commitlog.compression import DecompressionError, decompress
from cdc_platform.commitlog.descriptor import (
    Descriptor,
    SegmentName,
    parse_segment_name,
    read_descriptor,
    sync_marker_crc,
)
from cdc_platform.commitlog.encryption import (
    KeyProvider,
    KeyUnavailableError,
    check_decryption_parameters,
    decrypt_section,
)
from cdc_platform.commitlog.errors import (
    CommitLogError,
    CorruptSegmentError,
    DescriptorError,
    EncryptionError,
    MutationDecodeError,
    SegmentIdMismatchError,
)
from cdc_platform.commitlog.model import Mutation
from cdc_platform.commitlog.mutation import MutationDecoder, UnknownTableError
from cdc_platform.schema.model import Schema

SYNC_MARKER_SIZE = 8
ENTRY_OVERHEAD = 12
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_MARKER = struct.Struct(">iI")


@dataclass(frozen=True)
class Section:
    """One sync section, with its content already decompressed/decrypted."""

    index: int
    file_start: int
    file_end: int
    logical_start: int
    logical_end: int
    data: bytes
    is_last: bool
    truncated: bool  # bytes are missing: the section was cut off and ``data`` is empty
    damage: str | None = None  # why the section is truncated
    tolerates_errors: bool = False  # damage in it is a truncated tail (compressed/encrypted, reaches EOF)


@dataclass(frozen=True)
class Frame:
    """One entry's frame: logical start, resume position after it, and its payload."""

    position: int
    entry_location: int
    payload: bytes
    section: int


@dataclass(frozen=True)
class Damage:
    """Damage that Cassandra tolerates: a skipped entry (payload CRC) or a truncated tail."""

    kind: str  # "payload_crc" | "truncated"
    position: int
    message: str
    entry_location: int | None = None
    payload: bytes = b""


class SegmentReader:
    """Reads the sections and entry frames of one segment file.

    Args:
        path: the segment file (``CommitLog-<version>-<id>.log``).
        data: the file's bytes, if already read (a snapshot of a live segment).
        key_provider: keys for encrypted segments.
        check_name: verify that the file name's segment id matches the header's when the name
            is a segment name (Cassandra's "segment id mismatch" check; like Cassandra, the
            version in the name is not compared: the header's version is the one used).

    Raises:
        DescriptorError: the header is unreadable or fails its CRC.
        SegmentIdMismatchError: the file name's segment id disagrees with the header.
    """

    def __init__(
        self,
        path: str | Path,
        data: bytes | None = None,
        *,
        key_provider: KeyProvider | None = None,
        check_name: bool = True,
    ) -> None:
        self.path = Path(path)
        if data is None:
            try:
                data = self.path.read_bytes()
            except OSError as exc:
                raise DescriptorError(f"cannot read segment: {exc.strerror}", path=self.path) from None
        self.data = data
        self.key_provider = key_provider
        name: SegmentName | None = None
        try:
            name = parse_segment_name(self.path.name)
        except DescriptorError:
            name = None
        try:
            self.descriptor: Descriptor = read_descriptor(data, path=str(self.path))
        except DescriptorError as exc:
            if exc.segment_id is None and name is not None:
                exc.segment_id = name.segment_id
                exc.args = (exc._render(),)
            raise
        if check_name and name is not None and name.segment_id != self.descriptor.segment_id:
            raise SegmentIdMismatchError(
                f"segment id mismatch: the file name says {name.segment_id}, the header says "
                f"{self.descriptor.segment_id}",
                path=self.path,
                segment_id=self.descriptor.segment_id,
                position=0,
            )
        self._key: bytes | None = None

    @property
    def segment_id(self) -> int:
        return self.descriptor.segment_id

    def _error(self, cls: type[CommitLogError], message: str, position: int) -> CommitLogError:
        return cls(message, path=self.path, segment_id=self.segment_id, position=position)

    def _encryption_key(self, position: int) -> bytes:
        """The segment's key, once the header's cipher and IV are known to be usable.

        Raises:
            EncryptionError: unsupported cipher, missing or malformed IV, no key provider, or
                no key for the alias.
        """
        if self._key is None:
            enc = self.descriptor.encryption
            assert enc is not None
            try:
                check_decryption_parameters(enc.cipher, enc.iv)
            except ValueError as exc:
                raise self._error(EncryptionError, f"segment cannot be decrypted: {exc}", position) from None
            if self.key_provider is None:
                raise self._error(
                    EncryptionError,
                    f"segment is encrypted with key alias {enc.key_alias!r}: give the node's keystore "
                    "(--keystore, password from --keystore-password / $CDC_KEYSTORE_PASSWORD) or the raw key "
                    "($CDC_COMMITLOG_KEY)",
                    position,
                )
            try:
                self._key = self.key_provider.key(enc.key_alias)
            except KeyUnavailableError as exc:
                raise self._error(EncryptionError, str(exc), position) from None
        return self._key

    def _marker_is_end(self, pos: int) -> bool:
        """True when no valid sync marker starts at ``pos``: the section before it is the last."""
        if pos > len(self.data) - SYNC_MARKER_SIZE:
            return True
        _, crc = _MARKER.unpack_from(self.data, pos)
        return crc != sync_marker_crc(self.segment_id, pos)

    def sections(self, end: int | None = None) -> Iterator[Section]:
        """Yields the sync sections in order, applying Cassandra's end and damage rules.

        Args:
            end: logical durable offset (``_cdc.idx``); no marker at or past it is parsed.
                ``None`` reads every section.

        Raises:
            CorruptSegmentError: damage Cassandra does not tolerate (see the module docstring).
            EncryptionError: an encrypted section cannot be decrypted.
        """
        data = self.data
        n = len(data)
        desc = self.descriptor
        pos = desc.header_length
        logical = desc.header_length  # logical position of the marker at ``pos``
        encrypted = desc.encryption is not None
        compressed = desc.compression is not None and not encrypted
        overhead = 12 if (compressed or encrypted) else SYNC_MARKER_SIZE
        index = 0
        while True:
            if end is not None and logical >= end:
                # The marker here is not durable yet: on a live segment it may be half written
                # (end set, CRC still 0), so it must not be looked at.
                return
            if pos > n - SYNC_MARKER_SIZE:
                # No room for a marker: Cassandra's readSyncMarker returns -1, a normal end.
                return
            next_pos, crc = _MARKER.unpack_from(data, pos)
            if crc != sync_marker_crc(self.segment_id, pos):
                if next_pos == 0 and crc == 0:
                    return
                raise self._error(
                    CorruptSegmentError,
                    f"sync marker has an invalid CRC (stored {crc:#010x}) and is not the zero end marker",
                    pos,
                )
            if next_pos < pos + overhead:
                raise self._error(
                    CorruptSegmentError,
                    f"sync marker has a valid CRC but points to {next_pos}, before the end of its own header",
                    pos,
                )
            if next_pos > n:
                # readSyncMarker rejects an end past the file length and, since CASSANDRA-20664,
                # the segment stops here: nothing of this section is read.
                yield self._cut(
                    index,
                    pos,
                    logical,
                    f"sync marker at {pos} points to {next_pos}, past the end of the file at {n}; "
                    "the segment stops there and that section is not read",
                )
                return
            if not (compressed or encrypted):
                content = data[pos + SYNC_MARKER_SIZE : next_pos]
                is_last = self._marker_is_end(next_pos)
                yield Section(index, pos, next_pos, pos + SYNC_MARKER_SIZE, next_pos, content, is_last, False)
                pos = next_pos
                logical = next_pos
                index += 1
                continue
            # A section reaching the end of the file tolerates errors, as Cassandra's
            # Compressed/EncryptedSegmenter do (tolerateSegmentErrors: end >= file length).
            tolerates = next_pos >= n
            (declared,) = _U32.unpack_from(data, pos + 8)
            logical_start = logical + SYNC_MARKER_SIZE
            logical_end = logical_start + declared
            payload = data[pos + 12 : next_pos]
            is_last = tolerates or self._marker_is_end(next_pos)
            try:
                if encrypted:
                    content = self._decrypt(payload, declared, pos)
                else:
                    assert desc.compression is not None
                    content = decompress(desc.compression.algorithm, payload, declared)
            except DecompressionError as exc:
                if tolerates:
                    yield self._cut(
                        index,
                        pos,
                        logical,
                        f"last section (at {pos}, reaching the end of the file at {n}) cannot be read: {exc}",
                    )
                    return
                raise self._error(
                    CorruptSegmentError, f"section cannot be decompressed: {exc}", pos
                ) from None
            except ValueError as exc:
                raise self._error(CorruptSegmentError, str(exc), pos) from None
            yield Section(
                index,
                pos,
                next_pos,
                logical_start,
                logical_end,
                content,
                is_last,
                False,
                tolerates_errors=tolerates,
            )
            pos = next_pos
            logical = logical_end
            index += 1

    def _decrypt(self, payload: bytes, declared: int, pos: int) -> bytes:
        """The plaintext of an encrypted section.

        Raises:
            EncryptionError: no usable key, cipher or IV, or a block does not decrypt.
            CorruptSegmentError: the blocks are malformed. Neither is tolerated at the end of
                the file: Cassandra's chunk provider fails the whole read on them.
            DecompressionError: the plaintext is not the length the section header declares
                (Cassandra meets the end of the section's stream: tolerated at the end of the file).
        """
        enc = self.descriptor.encryption
        assert enc is not None
        key = self._encryption_key(pos)
        try:
            content = decrypt_section(payload, key, enc.iv, enc.cipher)
        except ValueError as exc:
            raise self._error(
                EncryptionError if "decrypt" in str(exc) else CorruptSegmentError,
                f"encrypted section cannot be read: {exc}",
                pos,
            ) from None
        if len(content) != declared:
            raise DecompressionError(
                f"encrypted section holds {len(content)} bytes, its header says {declared}"
            )
        return content

    def _cut(self, index: int, pos: int, logical: int, message: str) -> Section:
        """A truncated tail whose content cannot be recovered."""
        start = logical + SYNC_MARKER_SIZE
        return Section(index, pos, len(self.data), start, start, b"", True, True, message)

    def frames(self, start: int = 0, end: int | None = None) -> Iterator[Frame | Damage]:
        """Yields entry frames (and tolerated damage) whose resume position is in ``(start, end]``.

        Args:
            start: resume position of the last consumed entry (0 = from the beginning).
            end: the durable offset (``_cdc.idx``); ``None`` reads to the end of the data.
        """
        crc32 = zlib.crc32
        unpack_i32 = _I32.unpack_from
        unpack_u32 = _U32.unpack_from
        for section in self.sections(end):
            if end is not None and section.logical_start >= end:
                return
            if section.logical_end <= start:
                continue
            data = section.data
            base = section.logical_start
            size_total = len(data)
            p = 0
            problem: str | None = None  # why the section's entries stop early
            finished = True  # the segment ends with this section
            while p < size_total:
                position = base + p
                if size_total - p < 4:
                    break
                (size,) = unpack_i32(data, p)
                if size == 0:
                    break
                if size < 10 or p + 8 > size_total:
                    problem = f"invalid entry size {size}"
                    break
                size_crc = crc32(data[p : p + 4])
                if unpack_u32(data, p + 4)[0] != size_crc:
                    problem = f"entry size {size} fails its CRC"
                    break
                entry_end = p + 8 + size + 4
                if entry_end > size_total:
                    problem = f"entry of {size} bytes runs past the end of its section at {base + size_total}"
                    break
                location = base + entry_end
                if end is not None and location > end:
                    return
                if location <= start:
                    p = entry_end
                    continue
                payload = data[p + 8 : p + 8 + size]
                if crc32(payload, size_crc) != unpack_u32(data, p + 8 + size)[0]:
                    yield Damage(
                        "payload_crc",
                        position,
                        f"entry of {size} bytes fails its payload CRC; skipped",
                        location,
                        payload,
                    )
                else:
                    yield Frame(position, location, payload, section.index)
                p = entry_end
            else:
                finished = False  # every entry of the section was read: go on with the next section
            if section.truncated:
                # Bytes are missing: the section was not read; report the truncated tail.
                yield Damage("truncated", base + p, section.damage or "segment is truncated")
                return
            if problem is not None:
                if section.tolerates_errors:
                    yield Damage(
                        "truncated",
                        base + p,
                        f"{problem} in the last section, which reaches the end of the file; "
                        "read as a truncated tail",
                    )
                    return
                raise self._error(CorruptSegmentError, problem, base + p)
            if finished:
                return


@dataclass(frozen=True)
class DecodedEntry:
    """A decoded mutation with its position and resume position."""

    position: int
    entry_location: int
    mutation: Mutation


@dataclass(frozen=True)
class SkippedEntry:
    """An entry not decoded: unknown table, table not captured, or failed payload CRC.

    ``payload`` keeps the raw bytes so that nothing is lost (an unknown table's entries can be
    decoded later with a newer schema).
    """

    position: int
    entry_location: int
    reason: str  # "unknown_table" | "not_captured" | "payload_crc"
    table_id: str | None
    payload: bytes
    message: str = ""


@dataclass
class ReadReport:
    """What reading one segment found."""

    path: str
    segment_id: int
    version: int
    compression: str | None
    encrypted: bool
    entries: int = 0
    decoded: int = 0
    unknown_tables: Counter[str] = field(default_factory=Counter)
    not_captured: int = 0
    damaged: list[Damage] = field(default_factory=list)
    truncated: bool = False
    last_entry_location: int = 0


class SegmentDecoder:
    """Decodes the entries of one segment with a schema.

    Iterating yields :class:`DecodedEntry` and :class:`SkippedEntry` in commit log order;
    :attr:`report` is filled as it goes.

    Args:
        path: the segment file.
        schema: tables to decode, found by id.
        capture: ids of the tables to decode (default: every table in the schema). Entries
            holding only other tables are skipped without decoding.
        start: resume position (entries whose ``entry_location`` is at or before it are skipped).
        end: durable offset; ``None`` reads to the end of the data.
        key_provider: keys for encrypted segments.
        data: the file's bytes if already read.
    """

    def __init__(
        self,
        path: str | Path,
        schema: Schema,
        *,
        capture: set[str] | None = None,
        start: int = 0,
        end: int | None = None,
        key_provider: KeyProvider | None = None,
        data: bytes | None = None,
    ) -> None:
        self.reader = SegmentReader(path, data, key_provider=key_provider)
        self.schema = schema
        self.capture = capture
        self.start = start
        self.end = end
        d = self.reader.descriptor
        self.report = ReadReport(
            path=str(self.reader.path),
            segment_id=d.segment_id,
            version=d.version,
            compression=d.compression.algorithm if d.compression and not d.encryption else None,
            encrypted=d.encryption is not None,
            last_entry_location=start,
        )
        self._decoder = MutationDecoder(schema, d.version)
        self._capture_bytes = None if capture is None else {_uuid_bytes(t) for t in capture}

    def __iter__(self) -> Iterator[DecodedEntry | SkippedEntry]:
        report = self.report
        decoder = self._decoder
        capture = self._capture_bytes
        for item in self.reader.frames(self.start, self.end):
            if isinstance(item, Damage):
                report.damaged.append(item)
                if item.kind == "truncated":
                    report.truncated = True
                    continue
                report.entries += 1
                location = item.entry_location if item.entry_location is not None else item.position
                report.last_entry_location = location
                yield SkippedEntry(item.position, location, "payload_crc", None, item.payload, item.message)
                continue
            report.entries += 1
            payload = item.payload
            try:
                count, first = decoder.table_ids(payload)
                if capture is not None and count == 1 and first not in capture and decoder.known(first):
                    report.not_captured += 1
                    report.last_entry_location = item.entry_location
                    yield SkippedEntry(
                        item.position, item.entry_location, "not_captured", _uuid_str(first), payload
                    )
                    continue
                mutation = decoder.decode(payload)
            except UnknownTableError as exc:
                tid = str(exc.table_id)
                report.unknown_tables[tid] += 1
                report.last_entry_location = item.entry_location
                yield SkippedEntry(
                    item.position, item.entry_location, "unknown_table", tid, payload, str(exc)
                )
                continue
            except MutationDecodeError as exc:
                exc.path = str(self.reader.path)
                exc.segment_id = self.reader.segment_id
                exc.position = item.position
                exc.args = (exc._render(),)
                raise
            if capture is not None:
                updates = tuple(u for u in mutation.updates if u.table.id.bytes in capture)
                if not updates:
                    report.not_captured += 1
                    report.last_entry_location = item.entry_location
                    yield SkippedEntry(
                        item.position, item.entry_location, "not_captured", _uuid_str(first), payload
                    )
                    continue
                if len(updates) != len(mutation.updates):
                    mutation = Mutation(updates)
            report.decoded += 1
            report.last_entry_location = item.entry_location
            yield DecodedEntry(item.position, item.entry_location, mutation)


def _uuid_bytes(value: str) -> bytes:
    import uuid

    return uuid.UUID(str(value)).bytes


def _uuid_str(value: bytes) -> str:
    import uuid

    return str(uuid.UUID(bytes=value))
