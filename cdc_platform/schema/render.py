"""Rendering of CQL values as Cassandra's ``toJson()`` / ``SELECT JSON`` does.

The rules (``AbstractType.toJSONString`` of each marshal type):

- strings escaped like Jackson: ``"``, ``\\``, ``\\b \\t \\n \\f \\r``, other controls as
  ``\\u00XX`` with upper-case hex; everything else raw;
- blob ``"0x…"`` lower-case hex; numbers unquoted; float/double as Java's
  ``Float/Double.toString`` on JDK 8-17, which every Cassandra release runs on (``NaN`` and
  infinities as ``null``);
- timestamp ``"yyyy-MM-dd HH:mm:ss.SSSZ"`` in UTC with Java's Julian calendar before
  1582-10-15; date ISO-8601 (proleptic Gregorian); time ``HH:MM:SS.nnnnnnnnn``;
- inet as Java's ``getHostAddress`` (IPv6 uncompressed); uuid lower-case; duration like
  ``1y2mo3d4h5m6s7ms8us9ns``;
- collections ``[a, b]`` / ``{"k": v}`` with ``", "`` and ``": "``; map keys that do not
  render as a JSON string are escaped and quoted; tuples as arrays, UDTs as objects with
  declared field order (case-sensitive names wrapped in extra quotes).
"""

from __future__ import annotations

import ipaddress
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

from cdc_platform.schema.java_float import java_float_string
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
from cdc_platform.schema.values import EMPTY, Duration, InvalidValue

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_ESCAPE_TABLE = {i: f"\\u{i:04X}" for i in range(0x20)}
_ESCAPE_TABLE.update({ord(k): v for k, v in _ESCAPES.items()})


def quote_json_string(text: str) -> str:
    """Jackson's ``quoteAsString`` wrapped in double quotes."""
    return '"' + text.translate(_ESCAPE_TABLE) + '"'


def json_name(name: str) -> str:
    """A column or UDT field name as ``SELECT JSON`` prints it (case-sensitive names double-quoted)."""
    if name != name.lower():
        name = '"' + name + '"'
    return quote_json_string(name)


# --------------------------------------------------------------------------------------------
# Dates and times

_GREGORIAN_CUTOVER_MS = -12_219_292_800_000  # 1582-10-15T00:00:00Z


def civil_from_days(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) of a day count since 1970-01-01."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def _julian_from_days(days: int) -> tuple[int, int, int]:
    """Julian-calendar (year, month, day) of a day count since 1970-01-01."""
    jdn = days + 2_440_588
    c = jdn + 32_082
    d = (4 * c + 3) // 1461
    e = c - (1461 * d) // 4
    m = (5 * e + 2) // 153
    day = e - (153 * m + 2) // 5 + 1
    month = m + 3 - 12 * (m // 10)
    year = d - 4800 + m // 10
    return year, month, day


def format_timestamp(ms: int) -> str:
    """``yyyy-MM-dd HH:mm:ss.SSSZ`` in UTC, as Java's ``SimpleDateFormat`` prints it."""
    days, rem = divmod(ms, 86_400_000)
    if ms >= _GREGORIAN_CUTOVER_MS:
        y, mo, d = civil_from_days(days)
    else:
        y, mo, d = _julian_from_days(days)
    if y <= 0:
        y = 1 - y  # year of era: BC years print unsigned
    hh, rem = divmod(rem, 3_600_000)
    mm, rem = divmod(rem, 60_000)
    ss, millis = divmod(rem, 1000)
    return f"{y:04d}-{mo:02d}-{d:02d} {hh:02d}:{mm:02d}:{ss:02d}.{millis:03d}Z"


def format_date(days: int) -> str:
    """ISO local date of a day count since 1970-01-01 (``+`` for years over 9999)."""
    y, m, d = civil_from_days(days)
    if y > 9999:
        year = f"+{y}"
    elif y < 0:
        year = f"-{-y:04d}"
    else:
        year = f"{y:04d}"
    return f"{year}-{m:02d}-{d:02d}"


def format_time(nanos: int) -> str:
    """``HH:MM:SS.nnnnnnnnn``."""
    seconds, frac = divmod(nanos, 1_000_000_000)
    hh, rem = divmod(seconds, 3600)
    mm, ss = divmod(rem, 60)
    return f"{hh:02d}:{mm:02d}:{ss:02d}.{frac:09d}"


def format_duration(value: Duration) -> str:
    """Cassandra's ``Duration.toString`` (e.g. ``1y2mo3d4h5m6s7ms8us9ns``)."""
    months, days, nanos = value
    out = []
    if months < 0 or days < 0 or nanos < 0:
        out.append("-")
    months, days, nanos = abs(months), abs(days), abs(nanos)
    if months >= 12:
        out.append(f"{months // 12}y")
    if months % 12:
        out.append(f"{months % 12}mo")
    if days:
        out.append(f"{days}d")
    if nanos:
        for unit, size in (
            ("h", 3_600_000_000_000),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1000),
            ("ns", 1),
        ):
            if nanos >= size:
                out.append(f"{nanos // size}{unit}")
                nanos %= size
    return "".join(out)


def format_inet(value: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Java's ``InetAddress.getHostAddress``: IPv6 in full groups, IPv4-mapped as IPv4."""
    if isinstance(value, ipaddress.IPv6Address):
        if value.ipv4_mapped is not None:
            return str(value.ipv4_mapped)
        packed = value.packed
        return ":".join(f"{int.from_bytes(packed[i : i + 2], 'big'):x}" for i in range(0, 16, 2))
    return str(value)


# --------------------------------------------------------------------------------------------
# Values

Renderer = Callable[[Any], str]


def _empty_or(fn: Renderer, empty: str = '""') -> Renderer:
    def render(value: Any) -> str:
        if value is EMPTY:
            return empty
        return fn(value)

    return render


def _float_renderer(single: bool) -> Renderer:
    def render(value: float) -> str:
        if math.isnan(value) or math.isinf(value):
            return "null"
        return java_float_string(value, single=single)

    return render


_NATIVE: dict[str, Renderer] = {
    "ascii": lambda v: quote_json_string("" if v is EMPTY else v),
    "text": lambda v: quote_json_string("" if v is EMPTY else v),
    "blob": lambda v: '"0x' + ("" if v is EMPTY else bytes(v).hex()) + '"',
    "boolean": _empty_or(lambda v: "true" if v else "false"),
    "tinyint": _empty_or(str),
    "smallint": _empty_or(str),
    "int": _empty_or(str),
    "bigint": _empty_or(str),
    "varint": _empty_or(str),
    "counter": _empty_or(str),
    "float": _empty_or(_float_renderer(True)),
    "double": _empty_or(_float_renderer(False)),
    "decimal": _empty_or(lambda v: str(Decimal(v))),
    "uuid": _empty_or(lambda v: f'"{uuid.UUID(str(v))}"'),
    "timeuuid": _empty_or(lambda v: f'"{uuid.UUID(str(v))}"'),
    "timestamp": _empty_or(lambda v: f'"{format_timestamp(v)}"'),
    "date": _empty_or(lambda v: f'"{format_date(v)}"'),
    "time": _empty_or(lambda v: f'"{format_time(v)}"'),
    "duration": _empty_or(lambda v: f'"{format_duration(Duration(*v))}"'),
    "inet": _empty_or(lambda v: f'"{format_inet(v)}"'),
    "empty": lambda v: '""',
}


@cache
def renderer(cql_type: CqlType) -> Renderer:
    """A function rendering Python values of ``cql_type`` (see :mod:`.values`) as JSON text."""
    if isinstance(cql_type, NativeType):
        return _NATIVE[cql_type.name]
    if isinstance(cql_type, (ListType, SetType, VectorType)):
        elem = renderer(cql_type.element)
        return _empty_or(lambda v: "[" + ", ".join(elem(x) for x in v) + "]")
    if isinstance(cql_type, MapType):
        kr, vr = renderer(cql_type.key), renderer(cql_type.value)

        def render_key(k: Any) -> str:
            text = kr(k)
            return text if text.startswith('"') else quote_json_string(text)

        return _empty_or(lambda v: "{" + ", ".join(f"{render_key(k)}: {vr(x)}" for k, x in v) + "}")
    if isinstance(cql_type, TupleType):
        parts = [renderer(t) for t in cql_type.elements]
        return _empty_or(
            lambda v: (
                "[" + ", ".join("null" if x is None else r(x) for r, x in zip(parts, v, strict=False)) + "]"
            )
        )
    if isinstance(cql_type, UserType):
        fields = [
            (json_name(n), n, renderer(t))
            for n, t in zip(cql_type.field_names, cql_type.field_types, strict=True)
        ]

        def render_udt(v: Any) -> str:
            items = []
            for key, name, r in fields:
                x = v.get(name)
                items.append(f"{key}: {'null' if x is None else r(x)}")
            return "{" + ", ".join(items) + "}"

        return _empty_or(render_udt)
    raise TypeError(f"no JSON renderer for {cql_type!r}")


def to_json(cql_type: CqlType, value: Any) -> str:
    """Renders a value as Cassandra's ``toJson()`` does; ``None`` renders as ``null``.

    An :class:`~cdc_platform.schema.values.InvalidValue` renders as its raw bytes (``"0x…"``),
    so that undecodable bytes stay visible instead of being dropped.
    """
    if value is None:
        return "null"
    if isinstance(value, InvalidValue):
        return '"0x' + value.raw.hex() + '"'
    return renderer(cql_type)(value)
