"""CQL → PostgreSQL types: the one mapping table for PostgreSQL and TimescaleDB.

| CQL | PostgreSQL | note |
|---|---|---|
| ascii, text, varchar | text | a value holding U+0000 (PostgreSQL text cannot) is stored NULL |
| blob | bytea | |
| boolean | boolean | |
| tinyint, smallint | smallint | |
| int | integer | |
| bigint | bigint | |
| varint, decimal | numeric | exact (decimal keeps its scale); values beyond numeric's binary range (more than 16,383 digits after the point or about 131,000 before it) are stored NULL |
| float, double | real, double precision | NaN and infinities kept |
| uuid, timeuuid | uuid | |
| timestamp | timestamptz | millisecond precision; values outside year 1–9999 are stored NULL |
| date | date | values outside year 1–9999 are stored NULL |
| time | bigint | nanoseconds since midnight (PostgreSQL's time has microseconds) |
| duration | jsonb | ``{"months", "days", "nanoseconds"}`` |
| inet | inet | |
| list, set, vector of a scalar | ``T[]`` | sets in Cassandra's order; of a scalar mapped to jsonb (duration): jsonb |
| map, tuple, UDT, nested collections | jsonb | rendered as Cassandra's ``toJson()`` |

A value that cannot be held by its typed column is stored NULL there; the exact value is
always in the column's state (``_cdc_v:<name>``), from which dumps and reconciliation read.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

from psycopg.types.json import Jsonb

from cdc_platform.schema.render import to_json
from cdc_platform.schema.types import CqlType, ListType, NativeType, SetType, VectorType
from cdc_platform.schema.values import EMPTY, InvalidValue

_SCALAR: dict[str, str] = {
    "ascii": "text",
    "text": "text",
    "blob": "bytea",
    "boolean": "boolean",
    "tinyint": "smallint",
    "smallint": "smallint",
    "int": "integer",
    "bigint": "bigint",
    "counter": "bigint",
    "varint": "numeric",
    "decimal": "numeric",
    "float": "real",
    "double": "double precision",
    "uuid": "uuid",
    "timeuuid": "uuid",
    "timestamp": "timestamptz",
    "date": "date",
    "time": "bigint",
    "duration": "jsonb",
    "inet": "inet",
}

# Names psycopg's binary COPY understands.
_COPY_NAMES: dict[str, str] = {
    "text": "text",
    "bytea": "bytea",
    "boolean": "bool",
    "smallint": "int2",
    "integer": "int4",
    "bigint": "int8",
    "numeric": "numeric",
    "real": "float4",
    "double precision": "float8",
    "uuid": "uuid",
    "timestamptz": "timestamptz",
    "date": "date",
    "jsonb": "jsonb",
    "inet": "inet",
}

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MIN_MS = int((dt.datetime(1, 1, 1, tzinfo=dt.UTC) - _EPOCH).total_seconds() * 1000)
MAX_MS = int((dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC) - _EPOCH).total_seconds() * 1000)
MIN_DAY = (dt.date(1, 1, 1) - dt.date(1970, 1, 1)).days
MAX_DAY = (dt.date(9999, 12, 31) - dt.date(1970, 1, 1)).days


def _array_element(t: CqlType) -> str | None:
    """The scalar PostgreSQL type of a list/set/vector's elements, if it can be an array."""
    if isinstance(t, (ListType, SetType, VectorType)) and isinstance(t.element, NativeType):
        base = _SCALAR.get(t.element.name)
        if base is not None and base != "jsonb":
            return base
    return None


@cache
def pg_type(t: CqlType) -> str:
    """The PostgreSQL column type for a CQL type."""
    if isinstance(t, NativeType):
        return _SCALAR[t.name]
    elem = _array_element(t)
    if elem is not None:
        return f"{elem}[]"
    return "jsonb"


@cache
def copy_type(t: CqlType) -> str:
    """The type name for psycopg's binary COPY."""
    name = pg_type(t)
    if name.endswith("[]"):
        return _COPY_NAMES[name[:-2]] + "[]"
    return _COPY_NAMES[name]


def _timestamp(ms: int) -> Any:
    if not MIN_MS <= ms <= MAX_MS:
        return None
    return _EPOCH + dt.timedelta(milliseconds=ms)


def _date(days: int) -> Any:
    if not MIN_DAY <= days <= MAX_DAY:
        return None
    return dt.date(1970, 1, 1) + dt.timedelta(days=days)


# PostgreSQL numeric (binary COPY form): at most 16383 digits after the point, and a weight
# (base-10000 digits before the point) that fits an int16; kept a little inside the latter.
_MAX_SCALE = 16_383
_MAX_INTEGER_DIGITS = 131_000


def _numeric(v: Decimal) -> Decimal | None:
    _, digits, exponent = v.as_tuple()
    assert isinstance(exponent, int)  # CQL varints and decimals are finite
    if -exponent > _MAX_SCALE or len(digits) + exponent > _MAX_INTEGER_DIGITS:
        return None
    return v


def _text(v: str) -> Any:
    return None if "\x00" in v else v


def _json(t: CqlType) -> Callable[[Any], Any]:
    def convert(v: Any) -> Any:
        text = to_json(t, v)
        if _NUL.search(text):
            return None  # jsonb cannot hold U+0000
        return Jsonb(text, dumps=_passthrough)

    return convert


# An escaped U+0000 (\u0000 preceded by an even number of backslashes), not a literal "\\u0000".
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _passthrough(text: Any) -> str:
    return str(text)


_SCALAR_VALUE: dict[str, Callable[[Any], Any]] = {
    "ascii": _text,
    "text": _text,
    "timestamp": _timestamp,
    "date": _date,
    "duration": lambda v: Jsonb(
        json.dumps({"months": v[0], "days": v[1], "nanoseconds": v[2]}), dumps=_passthrough
    ),
    "varint": lambda v: _numeric(Decimal(v)),
    "decimal": lambda v: _numeric(Decimal(v)),
}


@cache
def pg_value(t: CqlType) -> Callable[[Any], Any]:
    """Python value (see :mod:`cdc_platform.schema.values`) → what psycopg writes; ``None`` when not representable."""
    if isinstance(t, NativeType):
        base = _SCALAR_VALUE.get(t.name, _identity)

        def scalar(v: Any) -> Any:
            if v is None or v is EMPTY or isinstance(v, InvalidValue):
                return None
            return base(v)

        return scalar
    if _array_element(t) is not None:
        assert isinstance(t, (ListType, SetType, VectorType))
        elem = pg_value(t.element)

        def array(v: Any) -> Any:
            if v is None or v is EMPTY or isinstance(v, InvalidValue):
                return None
            items = [elem(x) for x in v]
            return None if any(x is None for x in items) else items

        return array
    convert = _json(t)

    def jsonb(v: Any) -> Any:
        if v is None or v is EMPTY or isinstance(v, InvalidValue):
            return None
        return convert(v)

    return jsonb


def _identity(v: Any) -> Any:
    return v


@cache
def pg_column(t: CqlType) -> Callable[[list[Any]], list[Any]]:
    """:func:`pg_value` over a column of values that are ``None`` or valid (never ``EMPTY`` or invalid).

    Scalars psycopg takes as they are come back unchanged, without a call per value.
    """
    if isinstance(t, NativeType) and t.name not in _SCALAR_VALUE:
        return _same
    if isinstance(t, NativeType) and t.name in ("ascii", "text"):
        return lambda vs: [None if v is None or "\x00" in v else v for v in vs]
    convert = pg_value(t)
    return lambda vs: [None if v is None else convert(v) for v in vs]


def _same(vs: list[Any]) -> list[Any]:
    return vs
