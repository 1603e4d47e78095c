"""Segment file names and the descriptor header at the start of every segment.

Layout (``db/commitlog/CommitLogDescriptor``): ``i32 version``, ``i64 id``,
``u16 P``, ``P`` bytes of JSON parameters, ``u32 CRC32``. The CRC covers the version,
the id as low then high 32-bit halves, the parameter length *as a 4-byte int* and the
parameter bytes.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdc_platform.commitlog.errors import DescriptorError

VERSION_30 = 6  # Cassandra 3.0 / 3.11
VERSION_40 = 7  # Cassandra 4.0, 4.1, 5.0 in storage_compatibility_mode CASSANDRA_4
VERSION_50 = 8  # Cassandra 5.0 with storage_compatibility_mode UPGRADING / NONE
SUPPORTED_VERSIONS = (VERSION_30, VERSION_40, VERSION_50)

# Messaging version used to serialise mutations, per commit log version. Cassandra 3.0.14+
# reads version 6 as messaging 11 (VERSION_3014); mutations are byte-identical in 10 and 11.
MESSAGING_VERSIONS = {VERSION_30: 10, VERSION_40: 12, VERSION_50: 13}

SEGMENT_NAME = re.compile(r"^CommitLog-(\d+)-(\d+)\.log$")
LEGACY_SEGMENT_NAME = re.compile(r"^CommitLog-(\d+)\.log$")
CDC_INDEX_NAME = re.compile(r"^CommitLog-(\d+)-(\d+)(?:_cdc|-CDC)\.idx$")

_HEADER_FIXED = struct.Struct(">iqH")


def _crc_int(crc: int, value: int) -> int:
    return zlib.crc32(struct.pack(">i", _to_i32(value)), crc)


def _to_i32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value


@dataclass(frozen=True)
class SegmentName:
    """What a segment's file name says: commit log version and segment id."""

    version: int
    segment_id: int

    @property
    def log_name(self) -> str:
        return f"CommitLog-{self.version}-{self.segment_id}.log"

    @property
    def cdc_index_name(self) -> str:
        return f"CommitLog-{self.version}-{self.segment_id}_cdc.idx"


def parse_segment_name(name: str) -> SegmentName:
    """Parses ``CommitLog-<version>-<id>.log``.

    Raises:
        DescriptorError: the name is not a segment name, or is a pre-1.2.5 legacy name.
    """
    base = Path(name).name
    m = SEGMENT_NAME.match(base)
    if m:
        return SegmentName(int(m.group(1)), int(m.group(2)))
    if LEGACY_SEGMENT_NAME.match(base):
        raise DescriptorError(
            f"segment name {base!r} is a pre-1.2.5 legacy name; it cannot be read", path=name
        )
    raise DescriptorError(
        f"{base!r} is not a commit log segment name (CommitLog-<version>-<id>.log)", path=name
    )


def parse_cdc_index_name(name: str) -> SegmentName:
    """Parses ``CommitLog-<version>-<id>_cdc.idx`` (or the ``-CDC.idx`` spelling)."""
    base = Path(name).name
    m = CDC_INDEX_NAME.match(base)
    if not m:
        raise DescriptorError(
            f"{base!r} is not a CDC index name (CommitLog-<version>-<id>_cdc.idx)", path=name
        )
    return SegmentName(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class Compression:
    """The ``compressionClass`` / ``compressionParameters`` of a segment header."""

    class_name: str
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def algorithm(self) -> str:
        """Short lower-case name: ``lz4``, ``snappy``, ``deflate``, ``zstd``, ``noop`` (or the class name)."""
        simple = self.class_name.rsplit(".", 1)[-1]
        return {
            "LZ4Compressor": "lz4",
            "SnappyCompressor": "snappy",
            "DeflateCompressor": "deflate",
            "ZstdCompressor": "zstd",
            "NoopCompressor": "noop",
        }.get(simple, simple)


@dataclass(frozen=True)
class EncryptionParams:
    """Transparent data encryption parameters from the header."""

    cipher: str
    key_alias: str
    iv: bytes  # empty when the header has no ``encIV``


@dataclass(frozen=True)
class Descriptor:
    """A parsed segment header."""

    version: int
    segment_id: int
    parameters: dict[str, Any]
    header_length: int
    compression: Compression | None
    encryption: EncryptionParams | None

    @property
    def messaging_version(self) -> int:
        return MESSAGING_VERSIONS[self.version]

    @property
    def unsigned_deletion_time(self) -> bool:
        """Version 8 (messaging 13) stores local deletion times as unsigned 32-bit seconds."""
        return self.version >= VERSION_50


def _parse_params(raw: bytes, *, path: str | None, segment_id: int) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        params = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DescriptorError(
            f"header parameters are not valid JSON: {exc}", path=path, segment_id=segment_id, position=14
        ) from None
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise DescriptorError(
            "header parameters are not a JSON object", path=path, segment_id=segment_id, position=14
        )
    return params


def read_descriptor(data: bytes | memoryview, *, path: str | None = None) -> Descriptor:
    """Parses and verifies the descriptor header at the start of ``data``.

    Raises:
        DescriptorError: short header, CRC mismatch, unsupported version or bad parameters.
    """
    if len(data) < _HEADER_FIXED.size + 4:
        raise DescriptorError(
            f"file is {len(data)} bytes, too short for a descriptor header", path=path, position=0
        )
    version, segment_id, plen = _HEADER_FIXED.unpack_from(data, 0)
    end = _HEADER_FIXED.size + plen
    if len(data) < end + 4:
        raise DescriptorError(
            f"descriptor parameters ({plen} bytes) run past the end of the file", path=path, position=12
        )
    params_raw = bytes(data[_HEADER_FIXED.size : end])
    (stored_crc,) = struct.unpack_from(">I", data, end)
    crc = _crc_int(0, version)
    crc = _crc_int(crc, segment_id & 0xFFFFFFFF)
    crc = _crc_int(crc, (segment_id >> 32) & 0xFFFFFFFF)
    crc = _crc_int(crc, plen)
    crc = zlib.crc32(params_raw, crc)
    if crc != stored_crc:
        raise DescriptorError(
            f"descriptor header CRC mismatch (stored {stored_crc:#010x}, computed {crc:#010x})",
            path=path,
            segment_id=segment_id,
            position=end,
        )
    if version not in SUPPORTED_VERSIONS:
        if version < VERSION_30:
            msg = f"commit log version {version} is pre-3.0; only versions 6, 7 and 8 can be read"
        else:
            msg = f"commit log version {version} is newer than this reader (supported: 6, 7, 8)"
        raise DescriptorError(msg, path=path, segment_id=segment_id, position=0)
    params = _parse_params(params_raw, path=path, segment_id=segment_id)
    compression = None
    if params.get("compressionClass"):
        cparams = params.get("compressionParameters") or {}
        compression = Compression(
            str(params["compressionClass"]), {str(k): str(v) for k, v in cparams.items()}
        )
    encryption = None
    # EncryptionContext.createFromMap: encryption is on only when both the key alias and the
    # cipher are present (a JSON null counts as absent); a missing IV is reported when the
    # first section is decrypted, as Cassandra's getDecryptor does.
    if params.get("encKeyAlias") is not None and params.get("encCipher") is not None:
        iv_hex = params.get("encIV")
        try:
            iv = bytes.fromhex(str(iv_hex)) if iv_hex is not None else b""
        except ValueError:
            raise DescriptorError(
                f"encIV {iv_hex!r} is not hexadecimal", path=path, segment_id=segment_id, position=14
            ) from None
        encryption = EncryptionParams(
            cipher=str(params["encCipher"]),
            key_alias=str(params["encKeyAlias"]),
            iv=iv,
        )
    return Descriptor(
        version=version,
        segment_id=segment_id,
        parameters=params,
        header_length=end + 4,
        compression=compression,
        encryption=encryption,
    )


def json_simple_dumps(params: dict[str, Any]) -> str:
    """Serialises like json-simple's ``JSONValue.toJSONString`` of a ``TreeMap``.

    Keys sorted, no spaces, ``/`` escaped as ``\\/`` (json-simple does that).
    """
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False).replace("/", "\\/")


def encode_descriptor(version: int, segment_id: int, params: dict[str, Any] | None = None) -> bytes:
    """Builds a descriptor header exactly as ``CommitLogDescriptor.writeHeader`` does."""
    raw = json_simple_dumps(params or {}).encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"header parameters are {len(raw)} bytes; at most 65535 fit")
    head = _HEADER_FIXED.pack(version, segment_id, len(raw))
    crc = _crc_int(0, version)
    crc = _crc_int(crc, segment_id & 0xFFFFFFFF)
    crc = _crc_int(crc, (segment_id >> 32) & 0xFFFFFFFF)
    crc = _crc_int(crc, len(raw))
    crc = zlib.crc32(raw, crc)
    return head + raw + struct.pack(">I", crc)


def sync_marker_crc(segment_id: int, file_offset: int) -> int:
    """CRC of a sync marker: id low 32 bits, id high 32 bits, the marker's file offset."""
    crc = _crc_int(0, segment_id & 0xFFFFFFFF)
    crc = _crc_int(crc, (segment_id >> 32) & 0xFFFFFFFF)
    return _crc_int(crc, file_offset)
