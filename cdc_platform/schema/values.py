"""Serialisation of CQL values: bytes ⇄ Python values, per type.

Python representation (chosen to be exact and to convert directly to Arrow):

==============================  ============================================================
CQL type                        Python value
==============================  ============================================================
ascii, text, varchar            ``str``
blob                            ``bytes``
boolean                         ``bool``
tinyint … bigint, varint,       ``int`` (a counter's value is the sum of its shards; the raw
counter                         context is kept by the decoder)
float, double                   ``float``
decimal                         ``decimal.Decimal`` (scale kept)
uuid, timeuuid                  ``uuid.UUID``
timestamp                       ``int`` milliseconds since the epoch (any int64)
date                            ``int`` days since 1970-01-01 (signed)
time                            ``int`` nanoseconds since midnight
duration                        :class:`Duration`
inet                            ``ipaddress.IPv4Address`` / ``IPv6Address``
list, set, vector               ``list`` (sets in serialized, i.e. sorted, order)
map                             ``list`` of ``(key, value)`` tuples (serialized order)
tuple                           ``tuple`` (``None`` for null or missing components)
UDT                             ``dict`` field name → value (``None`` for null or missing)
==============================  ============================================================

A zero-length value of a type for which that is not a valid encoding (Cassandra allows
"empty" values for most types) is :data:`EMPTY`.
"""

from __future__ import annotations

import decimal
import ipaddress
import struct
import sys
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any, NamedTuple

from cdc_platform.commitlog.vint import encode_uvint, encode_vint, read_uvint, read_vint
from cdc_platform.schema.types import (
    CqlType,
    ListType,
    MapType,
    NativeType,
    SetType,
    TupleType,
    UserType,
    VectorType,
)

# A CQL varint (or a decimal's unscaled value) may have far more digits than Python's default
# limit for int <-> str conversions (4,300, a guard against quadratic-time conversion of huge
# untrusted numbers), and its text is what toJson(), change batches and ClickHouse hold. The
# limit is raised to PostgreSQL numeric's 131,072 digits (and a little more) for the process:
# larger values convert in tens of milliseconds; anything beyond still fails loudly.
INT_TEXT_DIGITS = 140_000
if 0 < sys.get_int_max_str_digits() < INT_TEXT_DIGITS:
    sys.set_int_max_str_digits(INT_TEXT_DIGITS)


class ValueDecodeError(ValueError):
    """Bytes that are not a valid serialization of the type."""


class _Empty:
    """The zero-length value (``0x``), distinct from null."""

    _instance: _Empty | None = None

    def __new__(cls) -> _Empty:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "EMPTY"

    def __reduce__(self) -> str:
        return "EMPTY"


EMPTY = _Empty()


class Duration(NamedTuple):
    """A CQL ``duration``: months, days and nanoseconds, each signed."""

    months: int
    days: int
    nanoseconds: int


class InvalidValue(NamedTuple):
    """Bytes that do not decode as the column's type; kept raw so nothing is lost."""

    raw: bytes
    reason: str


DATE_EPOCH_OFFSET = 1 << 31
NANOS_PER_DAY = 86_400 * 1_000_000_000

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")

Decoder = Callable[[bytes], Any]
Encoder = Callable[[Any], bytes]


def _fixed(st: struct.Struct, name: str) -> Decoder:
    size = st.size
    unpack = st.unpack

    def dec(raw: bytes) -> Any:
        if len(raw) != size:
            if not raw:
                return EMPTY
            raise ValueDecodeError(f"{name} needs {size} bytes, got {len(raw)}")
        return unpack(raw)[0]

    return dec


def _dec_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueDecodeError(f"text is not valid UTF-8 at byte {exc.start}") from None


def _dec_ascii(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueDecodeError(f"ascii value has a non-ASCII byte at {exc.start}") from None


def _dec_boolean(raw: bytes) -> Any:
    if len(raw) != 1:
        if not raw:
            return EMPTY
        raise ValueDecodeError(f"boolean needs 1 byte, got {len(raw)}")
    return raw[0] != 0


def _dec_varint(raw: bytes) -> Any:
    if not raw:
        return EMPTY
    return int.from_bytes(raw, "big", signed=True)


def _dec_decimal(raw: bytes) -> Any:
    if not raw:
        return EMPTY
    if len(raw) < 4:
        raise ValueDecodeError(f"decimal needs at least 4 bytes, got {len(raw)}")
    scale = _I32.unpack_from(raw, 0)[0]
    unscaled = int.from_bytes(raw[4:], "big", signed=True)
    sign = 1 if unscaled < 0 else 0
    digits = tuple(int(d) for d in str(abs(unscaled)))
    return decimal.Decimal((sign, digits, -scale))


def _dec_uuid(raw: bytes) -> Any:
    if len(raw) != 16:
        if not raw:
            return EMPTY
        raise ValueDecodeError(f"uuid needs 16 bytes, got {len(raw)}")
    return uuid.UUID(bytes=raw)


def _dec_timeuuid(raw: bytes) -> Any:
    value = _dec_uuid(raw)
    if value is not EMPTY and value.version != 1:
        raise ValueDecodeError(f"timeuuid {value} is version {value.version}, not 1")
    return value


def _dec_date(raw: bytes) -> Any:
    if len(raw) != 4:
        if not raw:
            return EMPTY
        raise ValueDecodeError(f"date needs 4 bytes, got {len(raw)}")
    return _U32.unpack(raw)[0] - DATE_EPOCH_OFFSET


def _dec_time(raw: bytes) -> Any:
    if len(raw) != 8:
        if not raw:
            return EMPTY
        raise ValueDecodeError(f"time needs 8 bytes, got {len(raw)}")
    nanos = _I64.unpack(raw)[0]
    if not 0 <= nanos < NANOS_PER_DAY:
        raise ValueDecodeError(f"time {nanos} ns is outside 00:00 to 24:00")
    return nanos


def _dec_duration(raw: bytes) -> Any:
    if not raw:
        return EMPTY
    try:
        months, pos = read_vint(raw, 0)
        days, pos = read_vint(raw, pos)
        nanos, pos = read_vint(raw, pos)
    except ValueError:
        raise ValueDecodeError("duration is truncated") from None
    if pos != len(raw):
        raise ValueDecodeError(f"duration has {len(raw) - pos} trailing bytes")
    return Duration(months, days, nanos)


def _dec_inet(raw: bytes) -> Any:
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw)
    if len(raw) == 16:
        return ipaddress.IPv6Address(raw)
    if not raw:
        return EMPTY
    raise ValueDecodeError(f"inet needs 4 or 16 bytes, got {len(raw)}")


def counter_total(raw: bytes) -> int:
    """Sum of the shard counts of a counter context (``db/context/CounterContext``).

    Layout: ``i16`` header length N, N ``i16`` shard indexes, then 32-byte shards
    (16-byte counter id, ``i64`` clock, ``i64`` count).
    """
    if len(raw) < 2:
        raise ValueDecodeError(f"counter context needs at least 2 bytes, got {len(raw)}")
    header = _I16.unpack_from(raw, 0)[0]
    if header < 0:
        raise ValueDecodeError(f"counter context has a negative header length {header}")
    body = 2 + 2 * header
    if body > len(raw) or (len(raw) - body) % 32:
        raise ValueDecodeError(f"counter context of {len(raw)} bytes is not header + 32-byte shards")
    return sum(_I64.unpack_from(raw, off + 24)[0] for off in range(body, len(raw), 32))


def _dec_counter(raw: bytes) -> Any:
    if not raw:
        return EMPTY
    if len(raw) == 8:
        # A bare long (counter deltas in some paths) rather than a context.
        return _I64.unpack(raw)[0]
    return counter_total(raw)


_NATIVE_DECODERS: dict[str, Decoder] = {
    "ascii": _dec_ascii,
    "text": _dec_text,
    "blob": bytes,
    "boolean": _dec_boolean,
    "tinyint": _fixed(_I8, "tinyint"),
    "smallint": _fixed(_I16, "smallint"),
    "int": _fixed(_I32, "int"),
    "bigint": _fixed(_I64, "bigint"),
    "varint": _dec_varint,
    "counter": _dec_counter,
    "float": _fixed(_F32, "float"),
    "double": _fixed(_F64, "double"),
    "decimal": _dec_decimal,
    "uuid": _dec_uuid,
    "timeuuid": _dec_timeuuid,
    "timestamp": _fixed(_I64, "timestamp"),
    "date": _dec_date,
    "time": _dec_time,
    "duration": _dec_duration,
    "inet": _dec_inet,
    "empty": lambda raw: EMPTY,
}


def _split_sized(raw: bytes, what: str) -> tuple[int, int]:
    if len(raw) < 4:
        raise ValueDecodeError(f"{what} needs a 4-byte element count, got {len(raw)} bytes")
    count = _I32.unpack_from(raw, 0)[0]
    if count < 0:
        raise ValueDecodeError(f"{what} has a negative element count {count}")
    return count, 4


def _read_sized(raw: bytes, pos: int, what: str) -> tuple[bytes | None, int]:
    if pos + 4 > len(raw):
        raise ValueDecodeError(f"{what} is truncated at byte {pos}")
    size = _I32.unpack_from(raw, pos)[0]
    pos += 4
    if size < 0:
        return None, pos
    if pos + size > len(raw):
        raise ValueDecodeError(f"{what} element of {size} bytes runs past the value end")
    return raw[pos : pos + size], pos + size


@cache
def decoder(cql_type: CqlType) -> Decoder:
    """A function decoding a serialized value of ``cql_type`` (frozen form for collections)."""
    if isinstance(cql_type, NativeType):
        return _NATIVE_DECODERS[cql_type.name]
    if isinstance(cql_type, (ListType, SetType)):
        elem = decoder(cql_type.element)
        what = cql_type.cql()

        def dec_list(raw: bytes) -> Any:
            if not raw:
                return EMPTY
            count, pos = _split_sized(raw, what)
            out = []
            for _ in range(count):
                item, pos = _read_sized(raw, pos, what)
                if item is None:
                    raise ValueDecodeError(f"{what} holds a null element")
                out.append(elem(item))
            if pos != len(raw):
                raise ValueDecodeError(f"{what} has {len(raw) - pos} trailing bytes")
            return out

        return dec_list
    if isinstance(cql_type, MapType):
        kdec, vdec = decoder(cql_type.key), decoder(cql_type.value)
        what = cql_type.cql()

        def dec_map(raw: bytes) -> Any:
            if not raw:
                return EMPTY
            count, pos = _split_sized(raw, what)
            out = []
            for _ in range(count):
                k, pos = _read_sized(raw, pos, what)
                v, pos = _read_sized(raw, pos, what)
                if k is None or v is None:
                    raise ValueDecodeError(f"{what} holds a null key or value")
                out.append((kdec(k), vdec(v)))
            if pos != len(raw):
                raise ValueDecodeError(f"{what} has {len(raw) - pos} trailing bytes")
            return out

        return dec_map
    if isinstance(cql_type, (TupleType, UserType)):
        types = cql_type.elements if isinstance(cql_type, TupleType) else cql_type.field_types
        decs = [decoder(t) for t in types]
        what = cql_type.cql()
        names = cql_type.field_names if isinstance(cql_type, UserType) else None

        def dec_tuple(raw: bytes) -> Any:
            if not raw:
                return EMPTY
            values: list[Any] = []
            pos = 0
            # Trailing components may be missing (fields added to a UDT after the value was written).
            while pos < len(raw):
                if len(values) >= len(decs):
                    raise ValueDecodeError(f"{what} value has more than {len(decs)} components")
                item, pos = _read_sized(raw, pos, what)
                values.append(None if item is None else decs[len(values)](item))
            values.extend([None] * (len(decs) - len(values)))
            if names is not None:
                return dict(zip(names, values, strict=True))
            return tuple(values)

        return dec_tuple
    if isinstance(cql_type, VectorType):
        elem = decoder(cql_type.element)
        size = cql_type.element.fixed_length
        dim = cql_type.dimension
        what = cql_type.cql()

        def dec_vector(raw: bytes) -> Any:
            if not raw:
                return EMPTY
            out = []
            pos = 0
            for _ in range(dim):
                if size is not None:
                    if pos + size > len(raw):
                        raise ValueDecodeError(f"{what} is truncated")
                    out.append(elem(raw[pos : pos + size]))
                    pos += size
                else:
                    try:
                        n, pos = read_uvint(raw, pos)
                    except ValueError:
                        raise ValueDecodeError(f"{what} is truncated") from None
                    if pos + n > len(raw):
                        raise ValueDecodeError(f"{what} is truncated")
                    out.append(elem(raw[pos : pos + n]))
                    pos += n
            if pos != len(raw):
                raise ValueDecodeError(f"{what} has {len(raw) - pos} trailing bytes")
            return out

        return dec_vector
    raise TypeError(f"no decoder for {cql_type!r}")


def deserialize(cql_type: CqlType, raw: bytes) -> Any:
    """Decodes ``raw`` as ``cql_type``.

    Raises:
        ValueDecodeError: the bytes are not a valid value of the type.
    """
    return decoder(cql_type)(raw)


# --------------------------------------------------------------------------------------------
# Encoding


def _enc_fixed(st: struct.Struct) -> Encoder:
    return lambda v: st.pack(v)


def _enc_varint(value: int) -> bytes:
    length = (value + (value < 0)).bit_length() // 8 + 1
    return value.to_bytes(length, "big", signed=True)


def _enc_decimal(value: decimal.Decimal) -> bytes:
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"decimal {value} is not finite; CQL decimals are finite")
    unscaled = int("".join(map(str, digits)) or "0")
    if sign:
        unscaled = -unscaled
    return _I32.pack(-exponent) + _enc_varint(unscaled)


def _enc_counter(value: int) -> bytes:
    # A single global shard with a zero counter id: the smallest valid context.
    return _I16.pack(1) + _I16.pack(-32768) + b"\x00" * 16 + _I64.pack(1) + _I64.pack(value)


_NATIVE_ENCODERS: dict[str, Encoder] = {
    "ascii": lambda v: v.encode("ascii"),
    "text": lambda v: v.encode("utf-8"),
    "blob": bytes,
    "boolean": lambda v: b"\x01" if v else b"\x00",
    "tinyint": _enc_fixed(_I8),
    "smallint": _enc_fixed(_I16),
    "int": _enc_fixed(_I32),
    "bigint": _enc_fixed(_I64),
    "varint": _enc_varint,
    "counter": _enc_counter,
    "float": _enc_fixed(_F32),
    "double": _enc_fixed(_F64),
    "decimal": _enc_decimal,
    "uuid": lambda v: v.bytes,
    "timeuuid": lambda v: v.bytes,
    "timestamp": _enc_fixed(_I64),
    "date": lambda v: _U32.pack(v + DATE_EPOCH_OFFSET),
    "time": _enc_fixed(_I64),
    "duration": lambda v: encode_vint(v[0]) + encode_vint(v[1]) + encode_vint(v[2]),
    "inet": lambda v: v.packed,
    "empty": lambda v: b"",
}


def _sized(b: bytes | None) -> bytes:
    return _I32.pack(-1) if b is None else _I32.pack(len(b)) + b


@cache
def encoder(cql_type: CqlType) -> Encoder:
    """A function serializing a Python value of ``cql_type`` (frozen form for collections)."""
    if isinstance(cql_type, NativeType):
        base = _NATIVE_ENCODERS[cql_type.name]
        return lambda v: b"" if v is EMPTY else base(v)
    if isinstance(cql_type, ListType):
        elem = encoder(cql_type.element)
        return lambda v: b"" if v is EMPTY else _I32.pack(len(v)) + b"".join(_sized(elem(x)) for x in v)
    if isinstance(cql_type, SetType):
        elem = encoder(cql_type.element)
        sort_key = comparator_key(cql_type.element)

        def enc_set(v: Any) -> bytes:
            if v is EMPTY:
                return b""
            items = sorted({elem(x) for x in v}, key=sort_key)
            return _I32.pack(len(items)) + b"".join(_sized(x) for x in items)

        return enc_set
    if isinstance(cql_type, MapType):
        kenc, venc = encoder(cql_type.key), encoder(cql_type.value)
        sort_key = comparator_key(cql_type.key)

        def enc_map(v: Any) -> bytes:
            if v is EMPTY:
                return b""
            entries = dict((kenc(k), venc(x)) for k, x in v)
            keys = sorted(entries, key=sort_key)
            return _I32.pack(len(keys)) + b"".join(_sized(k) + _sized(entries[k]) for k in keys)

        return enc_map
    if isinstance(cql_type, (TupleType, UserType)):
        types = cql_type.elements if isinstance(cql_type, TupleType) else cql_type.field_types
        encs = [encoder(t) for t in types]
        names = cql_type.field_names if isinstance(cql_type, UserType) else None

        def enc_tuple(v: Any) -> bytes:
            if v is EMPTY:
                return b""
            values = [v.get(n) for n in names] if names is not None else list(v)
            return b"".join(_sized(None if x is None else e(x)) for e, x in zip(encs, values, strict=True))

        return enc_tuple
    if isinstance(cql_type, VectorType):
        elem = encoder(cql_type.element)
        fixed = cql_type.element.fixed_length is not None

        def enc_vector(v: Any) -> bytes:
            if v is EMPTY:
                return b""
            if len(v) != cql_type.dimension:
                raise ValueError(f"{cql_type.cql()} needs {cql_type.dimension} elements, got {len(v)}")
            if fixed:
                return b"".join(elem(x) for x in v)
            parts = [elem(x) for x in v]
            return b"".join(encode_uvint(len(p)) + p for p in parts)

        return enc_vector
    raise TypeError(f"no encoder for {cql_type!r}")


def serialize(cql_type: CqlType, value: Any) -> bytes:
    """Encodes ``value`` as ``cql_type`` the way Cassandra serializes it."""
    return encoder(cql_type)(value)


# --------------------------------------------------------------------------------------------
# Ordering of serialized values (``AbstractType.compare``), used to sort sets, map keys,
# clustering values and cell paths like Cassandra does.


def _signed_key(raw: bytes) -> Any:
    return (0, int.from_bytes(raw, "big", signed=True)) if raw else (-1, 0)


def _float_key(st: struct.Struct) -> Callable[[bytes], Any]:
    def key(raw: bytes) -> Any:
        if len(raw) != st.size:
            return (-1, 0.0)
        v = st.unpack(raw)[0]
        # Java's Float.compare/Double.compare: -0.0 < 0.0, NaN greater than everything.
        if v != v:
            return (2, 0.0)
        return (1, v, 0 if (v == 0 and str(v).startswith("-")) else 1)

    return key


def _timeuuid_key(raw: bytes) -> Any:
    if len(raw) != 16:
        return (-1,)
    u = uuid.UUID(bytes=raw)
    # TimeUUIDType: timestamp first, then the remaining bytes compared as signed (Cassandra
    # compares the lsb as signed bytes).
    return (0, u.time, tuple(b - 256 if b > 127 else b for b in raw[8:]))


def _uuid_key(raw: bytes) -> Any:
    if len(raw) != 16:
        return (-1,)
    version = raw[6] >> 4
    if version == 1:
        return (0, version, uuid.UUID(bytes=raw).time, raw)
    return (0, version, raw)


def _decimal_key(raw: bytes) -> Any:
    value = _dec_decimal(raw)
    return (-1, decimal.Decimal(0)) if value is EMPTY else (0, value)


def _date_key(raw: bytes) -> Any:
    return (0, _U32.unpack(raw)[0]) if len(raw) == 4 else (-1, 0)


_NATIVE_KEYS: dict[str, Callable[[bytes], Any]] = {
    "tinyint": _signed_key,
    "smallint": _signed_key,
    "int": _signed_key,
    "bigint": _signed_key,
    "varint": _signed_key,
    "counter": _signed_key,
    "timestamp": _signed_key,
    "time": _signed_key,
    "float": _float_key(_F32),
    "double": _float_key(_F64),
    "decimal": _decimal_key,
    "timeuuid": _timeuuid_key,
    "uuid": _uuid_key,
    "date": _date_key,
}


@cache
def comparator_key(cql_type: CqlType) -> Callable[[bytes], Any]:
    """A sort key over *serialized* values of ``cql_type`` reproducing Cassandra's comparator."""
    if isinstance(cql_type, NativeType):
        return _NATIVE_KEYS.get(cql_type.name, bytes)
    if isinstance(cql_type, (ListType, SetType)):
        elem = comparator_key(cql_type.element)

        def list_key(raw: bytes) -> Any:
            if not raw:
                return (-1,)
            count, pos = _split_sized(raw, "collection")
            items = []
            for _ in range(count):
                item, pos = _read_sized(raw, pos, "collection")
                items.append(elem(item or b""))
            return (0, tuple(items))

        return list_key
    if isinstance(cql_type, MapType):
        kk, vk = comparator_key(cql_type.key), comparator_key(cql_type.value)

        def map_key(raw: bytes) -> Any:
            if not raw:
                return (-1,)
            count, pos = _split_sized(raw, "map")
            items = []
            for _ in range(count):
                k, pos = _read_sized(raw, pos, "map")
                v, pos = _read_sized(raw, pos, "map")
                items.append((kk(k or b""), vk(v or b"")))
            return (0, tuple(items))

        return map_key
    if isinstance(cql_type, (TupleType, UserType)):
        types = cql_type.elements if isinstance(cql_type, TupleType) else cql_type.field_types
        keys = [comparator_key(t) for t in types]

        def tuple_key(raw: bytes) -> Any:
            pos = 0
            items: list[Any] = []
            while pos < len(raw) and len(items) < len(keys):
                item, pos = _read_sized(raw, pos, "tuple")
                # A null component sorts before any value.
                items.append((-1,) if item is None else (0, keys[len(items)](item)))
            return tuple(items)

        return tuple_key
    return bytes


# --------------------------------------------------------------------------------------------
# Partition keys


def split_composite(raw: bytes, count: int) -> list[bytes]:
    """Splits a ``CompositeType`` partition key: per component ``u16`` length, bytes, ``0x00``.

    Raises:
        ValueDecodeError: the key does not hold ``count`` well-formed components.
    """
    parts: list[bytes] = []
    pos = 0
    while pos < len(raw):
        if pos + 2 > len(raw):
            raise ValueDecodeError(f"composite key component length truncated at byte {pos}")
        size = int.from_bytes(raw[pos : pos + 2], "big")
        pos += 2
        if pos + size + 1 > len(raw):
            raise ValueDecodeError(f"composite key component of {size} bytes truncated at byte {pos}")
        parts.append(raw[pos : pos + size])
        pos += size + 1
    if len(parts) != count:
        raise ValueDecodeError(f"composite key has {len(parts)} components, the table has {count}")
    return parts


def join_composite(parts: list[bytes]) -> bytes:
    """Builds a ``CompositeType`` partition key from component bytes."""
    return b"".join(len(p).to_bytes(2, "big") + p + b"\x00" for p in parts)
