"""The compressors Cassandra uses for commit log sections (``io/compress/*Compressor``).

- LZ4: 4-byte little-endian uncompressed length, then a raw LZ4 block (not a frame).
- Snappy: a raw Snappy block (not the framing format).
- Deflate: ``java.util.zip.Deflater`` defaults, i.e. a zlib (RFC 1950) stream.
- Zstd: a standard Zstandard frame.
- Noop (``NoopCompressor``): the section holds the uncompressed bytes themselves; as for the
  others, ``CompressedSegment`` writes the marker and the uncompressed length before them.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import cramjam
import lz4.block
import zstandard

ALGORITHMS = ("lz4", "snappy", "deflate", "zstd", "noop")

CLASS_NAMES = {
    "lz4": "LZ4Compressor",
    "snappy": "SnappyCompressor",
    "deflate": "DeflateCompressor",
    "zstd": "ZstdCompressor",
    "noop": "NoopCompressor",
}


class DecompressionError(ValueError):
    """A section's payload does not decompress to its declared length."""


def _lz4_decompress(data: bytes, size: int) -> bytes:
    return lz4.block.decompress(data)


def _snappy_decompress(data: bytes, size: int) -> bytes:
    return bytes(cramjam.snappy.decompress_raw(data))


def _deflate_decompress(data: bytes, size: int) -> bytes:
    return zlib.decompress(data)


def _zstd_decompress(data: bytes, size: int) -> bytes:
    # max_output_size covers frames written without a content size.
    return zstandard.ZstdDecompressor().decompress(data, max_output_size=max(size, 1))


def _noop_decompress(data: bytes, size: int) -> bytes:
    return data


_DECOMPRESS: dict[str, Callable[[bytes, int], bytes]] = {
    "lz4": _lz4_decompress,
    "snappy": _snappy_decompress,
    "deflate": _deflate_decompress,
    "zstd": _zstd_decompress,
    "noop": _noop_decompress,
}

_COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "lz4": lambda data: lz4.block.compress(data, store_size=True),
    "snappy": lambda data: bytes(cramjam.snappy.compress_raw(data)),
    "deflate": lambda data: zlib.compress(data),
    "zstd": lambda data: zstandard.ZstdCompressor(level=3).compress(data),
    "noop": lambda data: data,
}


def decompress(algorithm: str, data: bytes, uncompressed_length: int) -> bytes:
    """Decompresses one section payload.

    Args:
        algorithm: ``lz4``, ``snappy``, ``deflate``, ``zstd`` or ``noop``.
        data: the compressed payload.
        uncompressed_length: the length the section header declares; 0 with no payload is an
            empty closing section (Deflate writes none), 0 with a payload must decompress to nothing
            (no CRC covers the length field, so a damaged one must not hide entries).

    Raises:
        DecompressionError: the payload is damaged or decompresses to another length.
        ValueError: the algorithm is not supported.
    """
    try:
        fn = _DECOMPRESS[algorithm]
    except KeyError:
        raise ValueError(f"unsupported commit log compression {algorithm!r}") from None
    if uncompressed_length == 0 and not data:
        return b""
    try:
        out = fn(data, uncompressed_length)
    except Exception as exc:  # each library raises its own error types
        raise DecompressionError(f"{algorithm} payload does not decompress: {exc}") from None
    if len(out) != uncompressed_length:
        raise DecompressionError(
            f"{algorithm} payload decompresses to {len(out)} bytes, the section declares {uncompressed_length}"
        )
    return out


def compress(algorithm: str, data: bytes) -> bytes:
    """Compresses a section payload the way Cassandra's compressor for ``algorithm`` does."""
    try:
        return _COMPRESS[algorithm](data)
    except KeyError:
        raise ValueError(f"unsupported commit log compression {algorithm!r}") from None
