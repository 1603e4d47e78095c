"""``toJson()`` rendering: the examples of notes/tojson.md, plus oracle-based properties."""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import math
import re
import struct
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_platform.schema.java_float import java_float_string
from cdc_platform.schema.render import (
    format_date,
    format_timestamp,
    json_name,
    quote_json_string,
    to_json,
)
from cdc_platform.schema.types import NativeType, UserType, parse_type
from cdc_platform.schema.values import EMPTY, Duration, InvalidValue

UUID_A = uuid.UUID("6bddc89a-5644-11e4-97fc-56847afe9799")
UUID_B = uuid.UUID("6bddc89a-5644-11e4-97fc-56847afe9798")
UUID_C = uuid.UUID("2dd2cd62-6af3-4cf6-96fc-91b9ab62eedc")

INT = NativeType("int")
UDT_ABC = UserType(
    "ks",
    "abc",
    ("a", "b", "c"),
    (INT, NativeType("uuid"), parse_type("frozen<set<text>>")),
)
UDT_FOO = UserType("ks", "foo", ("a", "Foo"), (INT, INT))
UDT_A = UserType("ks", "just_a", ("a",), (INT,))
UDT_AB = UserType("ks", "ab", ("a", "b"), (INT, INT))
UDTS = {u.name: u for u in (UDT_ABC, UDT_FOO, UDT_A, UDT_AB)}


def f32(value: float) -> float:
    """The float32 nearest to ``value`` (as a Python float)."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


def render(type_text: str, value: Any) -> str:
    return to_json(parse_type(type_text, UDTS), value)


# --------------------------------------------------------------------------------------------
# §1-§3 strings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abcd", '"abcd"'),
        ("", '""'),
        ("\x00", '"\\u0000"'),
        ("\u8422", '"\u8422"'),
        ('ascii " text', '"ascii \\" text"'),
        ("a\\b", '"a\\\\b"'),
        ("\t", '"\\t"'),
        ("line1\nline2", '"line1\\nline2"'),
        ("\b\f\r", '"\\b\\f\\r"'),
        ("\x1b", '"\\u001B"'),
        ("\x1f", '"\\u001F"'),
        ("\x01\x0b\x0e", '"\\u0001\\u000B\\u000E"'),
        # Not escaped: '/', DEL, U+2028/U+2029, non-ASCII and astral characters.
        ("a/b", '"a/b"'),
        ("\x7f", '"\x7f"'),
        ("\u2028\u2029", '"\u2028\u2029"'),
        ("é😀", '"é😀"'),
    ],
)
def test_text_escaping(value: str, expected: str) -> None:
    assert render("text", value) == expected
    assert render("varchar", value) == expected
    assert quote_json_string(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("ascii text", '"ascii text"'), ("", '""'), ('a"b', '"a\\"b"')]
)
def test_ascii(value: str, expected: str) -> None:
    assert render("ascii", value) == expected


def test_empty_text_value_renders_as_empty_string() -> None:
    assert render("text", EMPTY) == '""'
    assert render("ascii", EMPTY) == '""'


# --------------------------------------------------------------------------------------------
# §4-§6 blob, boolean, integers


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b"\x00\x00\x00\x01", '"0x00000001"'), (b"", '"0x"'), (b"\xca\xfe", '"0xcafe"'), (EMPTY, '"0x"')],
)
def test_blob(value: Any, expected: str) -> None:
    assert render("blob", value) == expected


def test_boolean() -> None:
    assert render("boolean", True) == "true"
    assert render("boolean", False) == "false"


@pytest.mark.parametrize(
    ("type_text", "value", "expected"),
    [
        ("bigint", 123123123123, "123123123123"),
        ("int", -123123, "-123123"),
        ("smallint", -32768, "-32768"),
        ("tinyint", 127, "127"),
        ("varint", 123123123123123123123, "123123123123123123123"),
        ("varint", -(10**40), "-1" + "0" * 40),
        ("counter", 42, "42"),
        ("bigint", 2**63 - 1, "9223372036854775807"),
        ("bigint", -(2**63), "-9223372036854775808"),
    ],
)
def test_integers(type_text: str, value: int, expected: str) -> None:
    assert render(type_text, value) == expected


@pytest.mark.parametrize("type_text", ["int", "bigint", "varint", "decimal", "float", "double", "smallint"])
def test_empty_numbers_render_as_empty_string(type_text: str) -> None:
    assert render(type_text, EMPTY) == '""'


# --------------------------------------------------------------------------------------------
# §7 float and double


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (123123.123123, "123123.123123"),
        (123123.0, "123123.0"),
        (0.001, "0.001"),
        (9999999.0, "9999999.0"),
        (100.0, "100.0"),
        (-0.0, "-0.0"),
        (0.0, "0.0"),
        (0.5, "0.5"),
        (-1.25, "-1.25"),
        (1e7, "1.0E7"),
        (1e10, "1.0E10"),
        (9.999e-4, "9.999E-4"),
        (1e-4, "1.0E-4"),
        (5e-324, "4.9E-324"),
        (1.7976931348623157e308, "1.7976931348623157E308"),
        (-1.5e-7, "-1.5E-7"),
        (0.1 + 0.2, "0.30000000000000004"),
        (123456789.0, "1.23456789E8"),
        # JDK 8-17 (what every Cassandra release runs on), not the shortest form of JDK 19+.
        (2e23, "1.9999999999999998E23"),
        (1e23, "9.999999999999999E22"),
        (3.365e21, "3.3649999999999997E21"),
        (-1.6130484589462314e17, "-1.61304845894623136E17"),
        (-2.8717288692986997e25, "-2.8717288692986996E25"),
    ],
)
def test_double(value: float, expected: str) -> None:
    assert render("double", value) == expected
    assert java_float_string(value, single=False) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (123.123, "123.123"),
        (123123.0, "123123.0"),
        (30.0, "30.0"),
        (0.1, "0.1"),  # formatted as float32, not widened to 0.10000000149011612
        (0.001, "0.001"),
        (1e7, "1.0E7"),
        (9.999e-4, "9.999E-4"),
        (1.4e-45, "1.4E-45"),  # Float.MIN_VALUE
        (3.4028235e38, "3.4028235E38"),  # Float.MAX_VALUE
        (-0.0, "-0.0"),
        (16777216.0, "1.6777216E7"),
        # JDK 8-17 (what every Cassandra release runs on), not the shortest form of JDK 19+.
        (2.5e10, "2.49999995E10"),
        (1.2345678e8, "1.23456784E8"),
        (8.77575e7, "8.7757504E7"),
    ],
)
def test_float(value: float, expected: str) -> None:
    assert render("float", f32(value)) == expected
    assert java_float_string(f32(value), single=True) == expected


@pytest.mark.parametrize("type_text", ["float", "double"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_render_as_null(type_text: str, value: float) -> None:
    assert render(type_text, value) == "null"


_PLAIN = re.compile(r"-?(0|[1-9]\d*)\.\d+")
_SCIENTIFIC = re.compile(r"-?[1-9]\.\d+E-?[1-9]\d*")


def _significant_digits(text: str) -> str:
    mantissa = text.lstrip("-").split("E")[0].replace(".", "")
    return mantissa.lstrip("0").rstrip("0") or "0"


def _check_java_layout(text: str, value: float) -> None:
    if 1e-3 <= abs(value) < 1e7:
        assert _PLAIN.fullmatch(text), text
    else:
        assert _SCIENTIFIC.fullmatch(text), text


def _shortest_float32_digits(value: float) -> str:
    """Shortest decimal digits reading back as the float32 ``value``, closest if several."""
    exact = decimal.Decimal(value)
    target = struct.pack(">f", value)
    for precision in range(1, 10):
        ctx = decimal.Context(prec=precision, rounding=decimal.ROUND_HALF_EVEN)
        nearest = ctx.plus(exact)
        step = decimal.Decimal((0, (1,), nearest.adjusted() - precision + 1))
        candidates = []
        for cand in (nearest, nearest - step, nearest + step):
            try:
                if struct.pack(">f", float(cand)) == target:
                    candidates.append(cand)
            except OverflowError:
                continue
        if candidates:
            best = min(candidates, key=lambda c: abs(c - exact))
            return "".join(map(str, best.normalize().as_tuple().digits))
    raise AssertionError(f"no decimal reads back as {value!r}")


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v != 0))
def test_double_property_round_trip_in_java_layout(value: float) -> None:
    # JDK 8-17 digits are not always the shortest (test_java_float_string checks them against
    # the JDK), but they always read back, never undercut the shortest form, and stay within
    # the 18 digits of a rounded long.
    text = java_float_string(value, single=False)
    assert float(text) == value
    _check_java_layout(text, value)
    shortest = _significant_digits(repr(value).replace("e", "E"))
    assert len(shortest) <= len(_significant_digits(text)) <= 18


@settings(max_examples=300, deadline=None)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False).filter(lambda v: v != 0))
def test_float_property_round_trip_in_java_layout(value: float) -> None:
    text = java_float_string(value, single=True)
    assert struct.pack(">f", float(text)) == struct.pack(">f", value)
    _check_java_layout(text, value)
    shortest = _shortest_float32_digits(value)
    assert len(shortest) <= len(_significant_digits(text)) <= 9


# --------------------------------------------------------------------------------------------
# §8 decimal


@pytest.mark.parametrize(
    ("unscaled", "scale", "expected"),
    [
        (123123123123, 6, "123123.123123"),
        (-123, 14, "-1.23E-12"),
        (123, -2, "1.23E+4"),
        (1, -3, "1E+3"),
        (0, -2, "0E+2"),
        (0, 2, "0.00"),
        (123, 8, "0.00000123"),
        (123, 10, "1.23E-8"),
        (1, 7, "1E-7"),
        (1, 6, "0.000001"),
        (1000, 0, "1000"),
    ],
)
def test_decimal(unscaled: int, scale: int, expected: str) -> None:
    sign = 1 if unscaled < 0 else 0
    value = decimal.Decimal((sign, tuple(int(d) for d in str(abs(unscaled))), -scale))
    assert render("decimal", value) == expected


# --------------------------------------------------------------------------------------------
# §9 uuid


def test_uuid_and_timeuuid() -> None:
    assert render("uuid", UUID_A) == '"6bddc89a-5644-11e4-97fc-56847afe9799"'
    assert render("timeuuid", UUID_A) == '"6bddc89a-5644-11e4-97fc-56847afe9799"'
    raw = uuid.UUID(bytes=bytes.fromhex("ABCDEF0123456789 0123456789ABCDEF".replace(" ", "")))
    assert render("uuid", raw) == '"abcdef01-2345-6789-0123-456789abcdef"'
    assert render("uuid", EMPTY) == '""'


# --------------------------------------------------------------------------------------------
# §10 timestamp

_DAY_MS = 86_400_000
_JULIAN_0001_01_01 = -62135596800000 - 2 * _DAY_MS  # proleptic Gregorian 0000-12-30


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (1388534400000, "2014-01-01 00:00:00.000Z"),
        (0, "1970-01-01 00:00:00.000Z"),
        (1234, "1970-01-01 00:00:01.234Z"),
        (-1, "1969-12-31 23:59:59.999Z"),
        (253402300800000, "10000-01-01 00:00:00.000Z"),
        # Gregorian cutover: Julian dates before 1582-10-15.
        (-12219292800000, "1582-10-15 00:00:00.000Z"),
        (-12219292800001, "1582-10-04 23:59:59.999Z"),
        (-62135596800000, "0001-01-03 00:00:00.000Z"),
        # Julian 1000-01-01 is proleptic Gregorian 1000-01-06 (6 days apart in that century).
        (-30610224000000 + 5 * _DAY_MS, "1000-01-01 00:00:00.000Z"),
        # Year of era: 1 BC prints as 0001, 2 BC as 0002.
        (_JULIAN_0001_01_01, "0001-01-01 00:00:00.000Z"),
        (_JULIAN_0001_01_01 - 1, "0001-12-31 23:59:59.999Z"),
        (_JULIAN_0001_01_01 - 366 * _DAY_MS, "0001-01-01 00:00:00.000Z"),
        (_JULIAN_0001_01_01 - 366 * _DAY_MS - 1, "0002-12-31 23:59:59.999Z"),
        (2**63 - 1, "292278994-08-17 07:12:55.807Z"),
        (-(2**63), "292269055-12-02 16:47:04.192Z"),
    ],
)
def test_timestamp(ms: int, expected: str) -> None:
    assert render("timestamp", ms) == f'"{expected}"'
    assert format_timestamp(ms) == expected


def test_timestamp_reference_point_for_julian_example() -> None:
    # The constant used above for Gregorian 1000-01-01.
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    gregorian = dt.datetime(1000, 1, 1, tzinfo=dt.UTC)
    assert (gregorian - epoch) // dt.timedelta(milliseconds=1) == -30610224000000


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1582, 10, 15), max_value=dt.datetime(9999, 12, 31, 23, 59, 59)))
def test_timestamp_matches_gregorian_datetime_after_the_cutover(when: dt.datetime) -> None:
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    ms = (when - dt.datetime(1970, 1, 1)) // dt.timedelta(milliseconds=1)
    expected = (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}.{when.microsecond // 1000:03d}Z"
    )
    assert format_timestamp(ms) == expected


# --------------------------------------------------------------------------------------------
# §11 date


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (6290, "1987-03-23"),
        (0, "1970-01-01"),
        (-719528, "0000-01-01"),
        (-719529, "-0001-12-31"),
        (2932897, "+10000-01-01"),
        (-141427, "1582-10-15"),
        (-141428, "1582-10-14"),  # proleptic Gregorian: no Julian switch for dates
        (-(2**31), "-5877641-06-23"),
        (2**31 - 1, "+5881580-07-11"),
    ],
)
def test_date(days: int, expected: str) -> None:
    assert render("date", days) == f'"{expected}"'
    assert format_date(days) == expected


@settings(max_examples=200, deadline=None)
@given(st.dates())
def test_date_matches_iso_format(day: dt.date) -> None:
    assert format_date((day - dt.date(1970, 1, 1)).days) == day.isoformat()


# --------------------------------------------------------------------------------------------
# §12-§14 time, duration, inet


@pytest.mark.parametrize(
    ("nanos", "expected"),
    [
        (123, "00:00:00.000000123"),
        (0, "00:00:00.000000000"),
        (((7 * 60 + 35) * 60 + 7) * 10**9 + 111222, "07:35:07.000111222"),
        (86_399_999_999_999, "23:59:59.999999999"),
    ],
)
def test_time(nanos: int, expected: str) -> None:
    assert render("time", nanos) == f'"{expected}"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Duration(0, 0, 12_000), "12us"),
        (Duration(13, 2, (10 * 60 + 5) * 60 * 10**9), "1y1mo2d10h5m"),
        (Duration(14, 3, 3723004005006), "1y2mo3d1h2m3s4ms5us6ns"),
        (Duration(-1, 0, 0), "-1mo"),
        (Duration(0, -14, 0), "-14d"),
        (Duration(0, 14, 0), "14d"),  # P2W: weeks are never printed
        (Duration(0, 0, 90_000_000_000_000), "25h"),
        (Duration(24, 0, 0), "2y"),
        (Duration(0, 0, 0), ""),
        (Duration(-14, -3, -3723004005006), "-1y2mo3d1h2m3s4ms5us6ns"),
    ],
)
def test_duration(value: Duration, expected: str) -> None:
    assert render("duration", value) == f'"{expected}"'


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "0:0:0:0:0:0:0:1"),
        ("::", "0:0:0:0:0:0:0:0"),
        ("2001:db8::ff00:42:8329", "2001:db8:0:0:0:ff00:42:8329"),
        ("fe80::1", "fe80:0:0:0:0:0:0:1"),
        ("::ffff:1.2.3.4", "1.2.3.4"),  # IPv4-mapped: Java returns an Inet4Address
        ("::1.2.3.4", "0:0:0:0:0:0:102:304"),  # IPv4-compatible stays IPv6
    ],
)
def test_inet(address: str, expected: str) -> None:
    assert render("inet", ipaddress.ip_address(address)) == f'"{expected}"'


# --------------------------------------------------------------------------------------------
# §15-§20 collections, tuples, UDTs, vectors


@pytest.mark.parametrize(
    ("type_text", "value", "expected"),
    [
        ("list<int>", [1, 2, 3], "[1, 2, 3]"),
        ("frozen<list<int>>", [], "[]"),
        ("set<uuid>", [UUID_B, UUID_A], f'["{UUID_B}", "{UUID_A}"]'),
        ("set<text>", ["a"], '["a"]'),
        (
            "frozen<set<frozen<tuple<frozen<list<int>>, int>>>>",
            [([1, 2], 1), ([2, 3], 2)],
            "[[[1, 2], 1], [[2, 3], 2]]",
        ),
        ("map<ascii, int>", [("a", 1), ("b", 2)], '{"a": 1, "b": 2}'),
        ("frozen<map<int, int>>", [], "{}"),
        ("map<int, boolean>", [(0, True), (1, False)], '{"0": true, "1": false}'),
        ("map<boolean, boolean>", [(False, False), (True, True)], '{"false": false, "true": true}'),
        (
            "map<frozen<tuple<int, text>>, boolean>",
            [((0, "a"), True), ((1, "b"), False)],
            '{"[0, \\"a\\"]": true, "[1, \\"b\\"]": false}',
        ),
        ("map<frozen<just_a>, boolean>", [({"a": 0}, True)], '{"{\\"a\\": 0}": true}'),
        ("map<frozen<set<text>>, boolean>", [(["0", "1"], True)], '{"[\\"0\\", \\"1\\"]": true}'),
        (
            "map<int, frozen<tuple<uuid, int>>>",
            [(1, (UUID_C, 1)), (2, (UUID_C, 2))],
            f'{{"1": ["{UUID_C}", 1], "2": ["{UUID_C}", 2]}}',
        ),
        ("map<text, int>", [('q"k', 1)], '{"q\\"k": 1}'),
        ("map<float, int>", [(math.nan, 1)], '{"null": 1}'),
        ("map<int, int>", [(EMPTY, 1)], '{"": 1}'),
        ("map<timestamp, int>", [(0, 1)], '{"1970-01-01 00:00:00.000Z": 1}'),
        ("map<double, int>", [(1e7, 1)], '{"1.0E7": 1}'),
        ("frozen<tuple<int, text, uuid>>", (1, "foobar", UUID_A), f'[1, "foobar", "{UUID_A}"]'),
        ("frozen<tuple<int, text, uuid>>", (1, "foobar", None), '[1, "foobar", null]'),
        (
            "frozen<abc>",
            {"a": 1, "b": UUID_A, "c": ["bar", "foo"]},
            f'{{"a": 1, "b": "{UUID_A}", "c": ["bar", "foo"]}}',
        ),
        ("abc", {"a": 1, "b": UUID_A, "c": None}, f'{{"a": 1, "b": "{UUID_A}", "c": null}}'),
        # Declared field order, whatever the dict order.
        ("frozen<abc>", {"c": [], "b": UUID_A, "a": 1}, f'{{"a": 1, "b": "{UUID_A}", "c": []}}'),
        ("frozen<foo>", {"a": 0, "Foo": 0}, '{"a": 0, "\\"Foo\\"": 0}'),
        # Missing trailing fields (e.g. after ALTER TYPE ADD) are null, never omitted.
        ("frozen<ab>", {"a": 0}, '{"a": 0, "b": null}'),
        ("vector<float, 3>", [1.0, 2.5, -3.0], "[1.0, 2.5, -3.0]"),
        ("vector<float, 2>", [math.nan, 1e7], "[null, 1.0E7]"),
        ("vector<text, 2>", ["a", "b"], '["a", "b"]'),
        ("list<frozen<list<text>>>", [["x"], []], '[["x"], []]'),
    ],
)
def test_containers(type_text: str, value: Any, expected: str) -> None:
    assert render(type_text, value) == expected


def test_udt_field_names() -> None:
    assert json_name("a") == '"a"'
    assert json_name("Foo") == '"\\"Foo\\""'
    # Lower-case names with spaces or symbols are escaped, not extra-quoted.
    assert json_name("a b") == '"a b"'
    assert json_name('x"y') == '"x\\"y"'


def test_null_and_invalid_values() -> None:
    assert to_json(INT, None) == "null"
    assert to_json(INT, InvalidValue(b"\x01\x02", "3 bytes expected")) == '"0x0102"'
