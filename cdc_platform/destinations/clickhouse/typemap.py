"""CQL → ClickHouse types: the one mapping table for ClickHouse.

The type chosen depends on what the server supports (:class:`.client.Capabilities`): Debian's
ClickHouse 18.16 has neither ``DateTime64``, ``Date32``, ``Map`` nor ``Bool`` and flattens
``Array(Tuple(…))`` columns into ``Nested`` sub-columns; current servers and chdb have all of
them and keep such arrays whole.

| CQL | ClickHouse (with the capability) | without it | note |
|---|---|---|---|
| ascii, text, varchar | Nullable(String) | | UTF-8 bytes |
| blob | Nullable(String) | | raw bytes |
| boolean | Nullable(Bool) | Nullable(UInt8) | |
| tinyint, smallint, int, bigint | Nullable(Int8/Int16/Int32/Int64) | | |
| varint, decimal | Nullable(String) | | decimal text, exact: ClickHouse integers stop at 256 bits and its decimals have one scale per column, CQL decimals one per value |
| float, double | Nullable(Float32), Nullable(Float64) | | NaN and infinities kept |
| uuid, timeuuid | Nullable(UUID) | | |
| timestamp | Nullable(DateTime64(3, 'UTC')) | Nullable(Int64) | milliseconds kept; the Int64 holds milliseconds since the epoch, every value; DateTime64 holds 1900-01-01 … 2299-12-31 (1925 … 2283-11-11 on its first releases), others NULL |
| date | Nullable(Date32) | Nullable(Date) | Date32 has the DateTime64 range; Date holds 1970-01-01 … 2149-06-06; others NULL |
| time | Nullable(Int64) | | nanoseconds since midnight |
| duration | Nullable(String) | | JSON ``{"months", "days", "nanoseconds"}`` |
| inet | Nullable(String) | | the address as Cassandra prints it (IPv4 and IPv6 in one column) |
| list, set, vector | Array(E) | | sets in Cassandra's order; of tuples or UDTs: String (JSON) where ClickHouse flattens ``Array(Tuple)`` into ``Nested`` (18.16) |
| map | Map(K, E) | String (JSON) | only for keys of String, integer or UUID type (the key types every Map-capable version accepts); other maps are JSON |
| tuple | Tuple(E, …) | | |
| user type | Tuple(`field` E, …) | String (JSON) | named tuples; field names ClickHouse refuses (empty, leading digit, ``.``) make it JSON |
| anything holding a JSON part | Nullable(String) | | the whole value rendered as Cassandra's ``toJson()`` |

``E``, an element: ``Nullable(T)`` for a scalar (NULL when that element cannot be
represented), the composite type itself otherwise.

ClickHouse cannot make ``Array``, ``Map`` or ``Tuple`` ``Nullable``: a null collection is
stored as an empty one (Cassandra itself does not tell an empty non-frozen collection from
null), a null tuple as a tuple of defaults, and a collection whose map keys cannot be
represented as empty. A value that cannot be held by its typed column is stored NULL (or
that default); the exact value is always in the column's state (``_cdc_v:<name>``), from
which dumps and reconciliation read.

Values handed to the clients (:meth:`ChType.arrow` for chdb, clickhouse-driver for servers):
``bytes`` for String, ``int``, ``float``, ``bool``, ``uuid.UUID``, ``datetime.date``, ``int``
milliseconds for DateTime64, ``list`` for Array, ``dict`` for Map, ``tuple`` for Tuple.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from cdc_platform.schema.render import format_inet, to_json
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
from cdc_platform.schema.values import EMPTY, InvalidValue

if TYPE_CHECKING:
    import pyarrow as pa

    from cdc_platform.destinations.clickhouse.client import Capabilities

Convert = Callable[[Any], Any]

# Capabilities that change which type a CQL type maps to (see the table above).
TYPE_FLAGS = ("datetime64", "date32", "map", "bool_type", "named_tuple", "tuple_arrays")


def quote_identifier(name: str) -> str:
    """A ClickHouse identifier in backticks, escaped the way ClickHouse's ``backQuote`` does."""
    out = ["`"]
    for ch in name:
        if ch in "`\\":
            out.append("\\" + ch)
        elif ch in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[ch])
        else:
            out.append(ch)
    out.append("`")
    return "".join(out)


_CONTROL_ESCAPES = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


# --------------------------------------------------------------------------------------------
# ClickHouse types


class ChType(abc.ABC):
    """A ClickHouse column type: its SQL, its Arrow form and its default."""

    nullable: bool = False

    @abc.abstractmethod
    def sql(self) -> str:
        """The type as written in DDL."""

    @abc.abstractmethod
    def arrow(self) -> pa.DataType:
        """The Arrow type chdb reads into this type."""

    @abc.abstractmethod
    def default(self) -> Any:
        """The value stored for null (NULL for Nullable types)."""

    @abc.abstractmethod
    def default_sql(self) -> str:
        """A constant of this type holding :meth:`default` (for ``UNION ALL`` placeholders)."""


@dataclass(frozen=True)
class ChScalar(ChType):
    name: str
    nullable: bool = False

    def sql(self) -> str:
        return f"Nullable({self.name})" if self.nullable else self.name

    def arrow(self) -> pa.DataType:
        import pyarrow as pa

        factories: dict[str, Callable[[], pa.DataType]] = {
            "String": pa.binary,
            "Int8": pa.int8,
            "Int16": pa.int16,
            "Int32": pa.int32,
            "Int64": pa.int64,
            "UInt8": pa.uint8,
            "UInt64": pa.uint64,
            "Float32": pa.float32,
            "Float64": pa.float64,
            "Bool": pa.bool_,
            "UUID": pa.uuid,
            "Date": pa.date32,
            "Date32": pa.date32,
            _DATETIME64: lambda: pa.timestamp("ms", tz="UTC"),
        }
        return factories[self.name]()

    def default(self) -> Any:
        if self.nullable:
            return None
        return _SCALAR_DEFAULTS[self.name]

    def default_sql(self) -> str:
        if self.nullable:
            return f"CAST(NULL AS {self.sql()})"
        return f"CAST({_SCALAR_DEFAULT_SQL[self.name]} AS {self.sql()})"

    def with_null(self) -> ChScalar:
        return dataclasses.replace(self, nullable=True)


_DATETIME64 = "DateTime64(3, 'UTC')"
_SCALAR_DEFAULTS: dict[str, Any] = {
    "String": b"",
    "Int8": 0,
    "Int16": 0,
    "Int32": 0,
    "Int64": 0,
    "UInt8": 0,
    "UInt64": 0,
    "Float32": 0.0,
    "Float64": 0.0,
    "Bool": False,
}
_SCALAR_DEFAULT_SQL: dict[str, str] = {"String": "''"} | {
    k: "0" for k in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt64", "Float32", "Float64", "Bool")
}


@dataclass(frozen=True)
class ChArray(ChType):
    element: ChType

    def sql(self) -> str:
        return f"Array({self.element.sql()})"

    def arrow(self) -> pa.DataType:
        import pyarrow as pa

        return pa.list_(self.element.arrow())

    def default(self) -> Any:
        return []

    def default_sql(self) -> str:
        return f"CAST([] AS {self.sql()})"


@dataclass(frozen=True)
class ChMap(ChType):
    key: ChScalar
    value: ChType

    def sql(self) -> str:
        return f"Map({self.key.sql()}, {self.value.sql()})"

    def arrow(self) -> pa.DataType:
        import pyarrow as pa

        return pa.map_(self.key.arrow(), self.value.arrow())

    def default(self) -> Any:
        return {}

    def default_sql(self) -> str:
        return f"CAST(map() AS {self.sql()})"


@dataclass(frozen=True)
class ChTuple(ChType):
    elements: tuple[ChType, ...]
    names: tuple[str, ...] | None = None

    def sql(self) -> str:
        if self.names is None:
            return f"Tuple({', '.join(e.sql() for e in self.elements)})"
        return (
            "Tuple("
            + ", ".join(
                f"{quote_identifier(n)} {e.sql()}" for n, e in zip(self.names, self.elements, strict=True)
            )
            + ")"
        )

    def arrow(self) -> pa.DataType:
        import pyarrow as pa

        names = self.names or tuple(str(i + 1) for i in range(len(self.elements)))
        return pa.struct([(n, e.arrow()) for n, e in zip(names, self.elements, strict=True)])

    def default(self) -> Any:
        return tuple(e.default() for e in self.elements)

    def default_sql(self) -> str:
        return f"CAST(tuple({', '.join(e.default_sql() for e in self.elements)}) AS {self.sql()})"


STRING = ChScalar("String")
NULLABLE_STRING = ChScalar("String", nullable=True)
UINT8 = ChScalar("UInt8")
UINT64 = ChScalar("UInt64")
NULLABLE_INT64 = ChScalar("Int64", nullable=True)


# --------------------------------------------------------------------------------------------
# The mapping


Bounds = tuple[int, int]


@dataclass(frozen=True)
class Mapped:
    """How one CQL type is stored: the column type, and the conversion of values to it.

    ``convert`` takes a Python value as :mod:`cdc_platform.schema.values` decodes it (or
    ``None``) and returns what the clients write, never ``None`` for a non-Nullable type.
    """

    ch: ChType
    convert: Convert
    json: bool = False
    bounds: Bounds | None = None  # timestamps (ms) and dates (days) outside are NULL


class _Unrepresentable(Exception):
    """A value that a non-Nullable part of a composite type cannot hold."""


def _epoch_ms(y: int, m: int, d: int, end: bool = False) -> int:
    moment = dt.datetime(y, m, d, tzinfo=dt.UTC)
    if end:
        moment += dt.timedelta(days=1)
    ms = int((moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds()) * 1000
    return ms - 1 if end else ms


def _days(y: int, m: int, d: int) -> int:
    return (dt.date(y, m, d) - dt.date(1970, 1, 1)).days


# DateTime64 and Date32 cover 1900-01-01 … 2299-12-31 on newer servers, 1925-01-01 …
# 2283-11-11 on their first releases (probed: Capabilities.wide_dates); a value outside would silently wrap, so it is stored NULL instead.
_WIDE_MS = (_epoch_ms(1900, 1, 1), _epoch_ms(2299, 12, 31, end=True))
_NARROW_MS = (_epoch_ms(1925, 1, 1), _epoch_ms(2283, 11, 11, end=True))
_WIDE_DAYS = (_days(1900, 1, 1), _days(2299, 12, 31))
_NARROW_DAYS = (_days(1925, 1, 1), _days(2283, 11, 11))
_DATE_DAYS = (0, 65535)  # Date: a UInt16 day number
_EPOCH_DATE = dt.date(1970, 1, 1)


def _bounded(lo: int, hi: int, then: Convert | None = None) -> Convert:
    def convert(v: int) -> Any:
        if not lo <= v <= hi:
            return None
        return then(v) if then else v

    return convert


def _utf8(v: Any) -> Any:
    return v.encode("utf-8") if isinstance(v, str) else None


def _duration(v: Any) -> bytes:
    return json.dumps({"months": v[0], "days": v[1], "nanoseconds": v[2]}).encode()


def _scalar(t: NativeType, caps: Capabilities) -> tuple[ChScalar, Convert, Bounds | None]:
    """The non-Nullable ClickHouse type of a native CQL type, its conversion (``None``:
    unrepresentable) and, for timestamps (ms) and dates (days), the range it keeps."""
    ch, convert = _scalar_type(t, caps)
    bounds: Bounds | None = None
    if t.name == "timestamp" and ch.name == _DATETIME64:
        bounds = _WIDE_MS if caps.wide_dates else _NARROW_MS
    elif t.name == "date":
        bounds = (_WIDE_DAYS if caps.wide_dates else _NARROW_DAYS) if ch.name == "Date32" else _DATE_DAYS
    if bounds is not None:
        convert = _bounded(*bounds, None if t.name == "timestamp" else _to_date)
    return ch, convert, bounds


def _scalar_type(t: NativeType, caps: Capabilities) -> tuple[ChScalar, Convert]:
    """:func:`_scalar` without the range of timestamps and dates."""
    name = t.name
    if name in ("ascii", "text"):
        return STRING, _utf8
    if name == "blob":
        return STRING, bytes
    if name == "boolean":
        return (ChScalar("Bool"), bool) if caps.bool_type else (UINT8, int)
    ints = {"tinyint": "Int8", "smallint": "Int16", "int": "Int32", "bigint": "Int64", "counter": "Int64"}
    if name in ints:
        return ChScalar(ints[name]), int
    if name == "varint":
        return STRING, lambda v: str(int(v)).encode()
    if name == "decimal":
        return STRING, lambda v: str(Decimal(v)).encode()
    if name in ("float", "double"):
        return ChScalar("Float32" if name == "float" else "Float64"), float
    if name in ("uuid", "timeuuid"):
        return ChScalar("UUID"), _identity
    if name == "timestamp":
        return (ChScalar(_DATETIME64), int) if caps.datetime64 else (ChScalar("Int64"), int)
    if name == "date":
        return (ChScalar("Date32"), _to_date) if caps.date32 else (ChScalar("Date"), _to_date)
    if name == "time":
        return ChScalar("Int64"), int
    if name == "duration":
        return STRING, _duration
    if name == "inet":
        return STRING, lambda v: format_inet(v).encode()
    if name == "empty":
        return STRING, lambda v: None
    raise ValueError(f"no ClickHouse type for CQL type {name}")


# (CQL type, ClickHouse type) pairs whose Arrow column (of a change batch) converts by a cast.
_ARROW_CASTS = {
    ("ascii", "String"),
    ("text", "String"),
    ("blob", "String"),
    ("tinyint", "Int8"),
    ("smallint", "Int16"),
    ("int", "Int32"),
    ("bigint", "Int64"),
    ("float", "Float32"),
    ("double", "Float64"),
    ("boolean", "Bool"),
    ("boolean", "UInt8"),
    ("timestamp", "Int64"),
    ("time", "Int64"),
    ("timestamp", _DATETIME64),
    ("date", "Date32"),
    ("date", "Date"),
}


def arrow_values(t: CqlType, mapped: Mapped, values: pa.Array) -> pa.Array | None:
    """What ``mapped.convert`` gives for each value of a change batch's typed column, as an
    Arrow array of ``mapped.ch.arrow()``; ``None`` for types converted value by value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from cdc_platform.changes.arrow import storage_type
    from cdc_platform.destinations.columnar import null_unless

    ch = mapped.ch
    if not (isinstance(t, NativeType) and isinstance(ch, ChScalar) and (t.name, ch.name) in _ARROW_CASTS):
        return None
    target = ch.arrow()
    if mapped.bounds is not None:
        lo, hi = mapped.bounds
        numbers = values.cast(storage_type(values.type))
        values = null_unless(values, pc.and_(pc.greater_equal(numbers, lo), pc.less_equal(numbers, hi)))
    if pa.types.is_time64(values.type) or (
        pa.types.is_timestamp(values.type) and not pa.types.is_timestamp(target)
    ):
        values = values.cast(pa.int64())
    return values.cast(target)


def _to_date(days: int) -> dt.date:
    return _EPOCH_DATE + dt.timedelta(days=days)


def _identity(v: Any) -> Any:
    return v


def _missing(v: Any) -> bool:
    return v is None or v is EMPTY or isinstance(v, InvalidValue)


_MAP_KEYS = frozenset({"String", "Int8", "Int16", "Int32", "Int64", "UUID"})
_TUPLE_NAME = re.compile(r"^[^0-9.][^.]*$")


def _natural(t: CqlType, caps: Capabilities, top: bool) -> Mapped | None:
    """The natural (non-JSON) mapping of ``t``, or ``None`` when some part has none.

    Scalars become ``Nullable`` and convert unrepresentable values to NULL. Composites
    convert a missing value to their default at the top level and raise
    :class:`_Unrepresentable` inside another composite when a non-Nullable part cannot hold
    a value (the top level then stores the default).
    """
    if isinstance(t, NativeType):
        base, conv, bounds = _scalar(t, caps)

        def scalar(v: Any) -> Any:
            if _missing(v):
                return None
            return conv(v)

        return Mapped(base.with_null(), scalar, bounds=bounds)
    if isinstance(t, (ListType, SetType, VectorType)):
        elem = _natural(t.element, caps, False)
        if elem is None or (not caps.tuple_arrays and _holds_tuple(elem.ch)):
            return None
        ch: ChType = ChArray(elem.ch)
        econv = elem.convert

        def array(v: Any) -> Any:
            return [econv(x) for x in v]

        return _composite(ch, array, top)
    if isinstance(t, MapType):
        if not caps.map or not isinstance(t.key, NativeType):
            return None
        kbase, kconv, _ = _scalar(t.key, caps)
        value = _natural(t.value, caps, False)
        if kbase.name not in _MAP_KEYS or value is None:
            return None
        vconv = value.convert

        def mapping(v: Any) -> Any:
            out = {}
            for k, x in v:
                key = None if _missing(k) else kconv(k)
                if key is None:
                    raise _Unrepresentable
                out[key] = vconv(x)
            return out

        return _composite(ChMap(kbase, value.ch), mapping, top)
    if isinstance(t, TupleType):
        parts = [_natural(e, caps, False) for e in t.elements]
        if any(p is None for p in parts):
            return None
        return _tuple([p for p in parts if p is not None], None, top)
    if isinstance(t, UserType):
        if not caps.named_tuple or not all(_TUPLE_NAME.match(n) for n in t.field_names):
            return None
        parts = [_natural(e, caps, False) for e in t.field_types]
        if any(p is None for p in parts):
            return None
        names = t.field_names
        mapped = _tuple([p for p in parts if p is not None], names, top)
        by_position = mapped.convert

        def udt(v: Any) -> Any:
            if _missing(v):
                return by_position(v)
            return by_position(tuple(v.get(n) for n in names))

        return Mapped(mapped.ch, udt)
    raise ValueError(f"no ClickHouse type for CQL type {t.cql()}")


def _holds_tuple(ch: ChType) -> bool:
    if isinstance(ch, ChTuple):
        return True
    if isinstance(ch, ChArray):
        return _holds_tuple(ch.element)
    if isinstance(ch, ChMap):
        return _holds_tuple(ch.value)
    return False


def _tuple(parts: list[Mapped], names: tuple[str, ...] | None, top: bool) -> Mapped:
    convs = [p.convert for p in parts]

    def tup(v: Any) -> Any:
        items = list(v) + [None] * (len(convs) - len(v))
        return tuple(c(x) for c, x in zip(convs, items, strict=False))

    return _composite(ChTuple(tuple(p.ch for p in parts), names), tup, top)


def _composite(ch: ChType, conv: Convert, top: bool) -> Mapped:
    default = ch.default

    def convert(v: Any) -> Any:
        if _missing(v):
            return default()
        if top:
            try:
                return conv(v)
            except _Unrepresentable:
                return default()
        return conv(v)

    return Mapped(ch, convert)


@cache
def mapping(t: CqlType, caps: Capabilities) -> Mapped:
    """How a column of CQL type ``t`` is stored on a server with ``caps`` (see the table above)."""
    natural = _natural(t, caps, True)
    if natural is not None:
        return natural

    def as_json(v: Any) -> Any:
        if _missing(v):
            return None
        return to_json(t, v).encode("utf-8")

    return Mapped(NULLABLE_STRING, as_json, json=True)


def variants(t: CqlType, caps: Capabilities) -> Iterator[Mapped]:
    """The mapping under ``caps`` first, then under every subset of its type capabilities.

    A column created before the server gained a capability (an upgrade from 18.16, say) keeps
    its type: :meth:`ClickHouseDestination.ensure_table` picks the variant matching it.
    """
    yield mapping(t, caps)
    present = [f for f in TYPE_FLAGS if getattr(caps, f)]
    for n in range(len(present) - 1, -1, -1):
        for kept in itertools.combinations(present, n):
            off = {f: False for f in present if f not in kept}
            yield mapping(t, caps.override(off))


# --------------------------------------------------------------------------------------------
# Comparing type names as the server prints them

_TYPE_TOKEN = re.compile(
    r"\s*(?:`((?:[^`\\]|\\.)*)`|([A-Za-z_][A-Za-z0-9_]*)|('(?:[^'\\]|\\.)*')|(\d+)|([(),]))"
)


def normal_type(text: str) -> tuple[str, ...]:
    """Tokens of a type name with identifier quoting and spacing removed, for comparison."""
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TYPE_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            out.append(text[pos:])
            break
        quoted, bare, string, number, punct = m.groups()
        if quoted is not None:
            out.append("id:" + re.sub(r"\\(.)", r"\1", quoted))
        elif bare is not None:
            out.append("id:" + bare)
        else:
            out.append(string or number or punct or "")
        pos = m.end()
    return tuple(out)
