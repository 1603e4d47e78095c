"""Cassandra's variable-length integers (``utils/vint/VIntCoding``).

This is not LEB128: the number of leading one bits of the first byte says how many
extra bytes follow, big-endian. Up to 2**56 - 1 fits in 8 bytes; larger values take
9 bytes (``0xFF`` then 8 bytes). Signed values use zig-zag encoding.
"""

from __future__ import annotations

_MASK64 = (1 << 64) - 1

# Number of extra bytes, indexed by the first byte.
EXTRA_BYTES: tuple[int, ...] = tuple(8 if b == 0xFF else (8 - (b ^ 0xFF).bit_length()) for b in range(256))
# Value bits carried by the first byte, indexed by the first byte.
_FIRST_BITS: tuple[int, ...] = tuple(
    b & (0xFF >> EXTRA_BYTES[b]) if EXTRA_BYTES[b] < 8 else 0 for b in range(256)
)


class VIntError(ValueError):
    """A VInt ran past the end of its buffer."""


def read_uvint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Reads an unsigned VInt.

    Args:
        data: the buffer.
        pos: offset of the first byte.

    Returns:
        ``(value, new_pos)`` with ``value`` in ``[0, 2**64)``.

    Raises:
        VIntError: the buffer ends inside the VInt.
    """
    try:
        b = data[pos]
    except IndexError:
        raise VIntError(f"vint at {pos} runs past the end of the buffer") from None
    if b < 0x80:
        return b, pos + 1
    n = EXTRA_BYTES[b]
    end = pos + 1 + n
    if end > len(data):
        raise VIntError(f"vint at {pos} needs {n + 1} bytes, buffer ends at {len(data)}")
    value = (_FIRST_BITS[b] << (8 * n)) | int.from_bytes(data[pos + 1 : end], "big")
    return value, end


def read_vint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Reads a signed (zig-zag) VInt; returns ``(value, new_pos)``."""
    u, pos = read_uvint(data, pos)
    return (u >> 1) ^ -(u & 1), pos


def uvint_size(value: int) -> int:
    """Number of bytes :func:`encode_uvint` uses for ``value`` (taken modulo 2**64)."""
    value &= _MASK64
    if value == 0:
        return 1
    bits = value.bit_length()
    if bits > 56:
        return 9
    return (bits - 1) // 7 + 1


def encode_uvint(value: int) -> bytes:
    """Encodes ``value`` (taken modulo 2**64, as Java does) as an unsigned VInt."""
    value &= _MASK64
    if value < 0x80:
        return bytes((value,))
    size = uvint_size(value)
    if size == 9:
        return b"\xff" + value.to_bytes(8, "big")
    extra = size - 1
    raw = value.to_bytes(size, "big")
    first = raw[0] | (0xFF << (8 - extra)) & 0xFF
    return bytes((first,)) + raw[1:]


def encode_vint(value: int) -> bytes:
    """Encodes a signed 64-bit value with zig-zag then unsigned VInt."""
    return encode_uvint(((value << 1) ^ (value >> 63)) & _MASK64)


def to_int32(value: int) -> int:
    """The low 32 bits of ``value`` as a signed int32 (Java's ``(int)`` cast)."""
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value


def to_int64(value: int) -> int:
    """``value`` modulo 2**64 as a signed int64 (Java long overflow)."""
    value &= _MASK64
    return value - (1 << 64) if value & (1 << 63) else value
