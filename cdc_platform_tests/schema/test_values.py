"""Value serialization: hand-computed encodings, round trips, ordering and malformed input."""

from __future__ import annotations

import decimal
import ipaddress
import math
import struct
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_platform.schema.types import (
    CqlType,
    ListType,
    NativeType,
    TupleType,
    UserType,
    VectorType,
    parse_type,
)
from cdc_platform.schema.values import (
    EMPTY,
    NANOS_PER_DAY,
    Duration,
    ValueDecodeError,
    comparator_key,
    counter_total,
    deserialize,
    join_composite,
    serialize,
    split_composite,
)

INT = NativeType("int")
TEXT = NativeType("text")
POINT = UserType("ks", "point", ("x", "Label", "z"), (INT, TEXT, NativeType("double")))


def t(text: str) -> CqlType:
    return parse_type(text, {"point": POINT})


def h(text: str) -> bytes:
    """Hex with spaces allowed, for readable expectations."""
    return bytes.fromhex(text.replace(" ", ""))


# --------------------------------------------------------------------------------------------
# Known encodings (computed by hand from Cassandra's serializers)


@pytest.mark.parametrize(
    ("type_text", "value", "encoded"),
    [
        ("int", -1, "ff ff ff ff"),
        ("int", 1, "00 00 00 01"),
        ("int", -(2**31), "80 00 00 00"),
        ("bigint", -2, "ff ff ff ff ff ff ff fe"),
        ("bigint", 2**63 - 1, "7f ff ff ff ff ff ff ff"),
        ("smallint", -2, "ff fe"),
        ("tinyint", -1, "ff"),
        ("tinyint", 127, "7f"),
        ("boolean", True, "01"),
        ("boolean", False, "00"),
        ("timestamp", -1, "ff ff ff ff ff ff ff ff"),
        ("timestamp", 1_000, "00 00 00 00 00 00 03 e8"),
        ("counter", 5, "0001 8000" + "00" * 16 + "0000000000000001" + "0000000000000005"),
        # varint: minimal big-endian two's complement
        ("varint", 0, "00"),
        ("varint", 1, "01"),
        ("varint", -1, "ff"),
        ("varint", 127, "7f"),
        ("varint", 128, "00 80"),
        ("varint", -128, "80"),
        ("varint", -129, "ff 7f"),
        ("varint", 255, "00 ff"),
        ("varint", 256, "01 00"),
        ("varint", 2**63, "00 80 00 00 00 00 00 00 00"),
        ("varint", -(2**63), "80 00 00 00 00 00 00 00"),
        # decimal: i32 scale, then the unscaled value as a varint
        ("decimal", decimal.Decimal("1.23E+4"), "ff ff ff fe 7b"),
        ("decimal", decimal.Decimal("123.45"), "00 00 00 02 30 39"),
        ("decimal", decimal.Decimal("-0.001"), "00 00 00 03 ff"),
        ("decimal", decimal.Decimal("0"), "00 00 00 00 00"),
        ("decimal", decimal.Decimal("1.0"), "00 00 00 01 0a"),
        ("decimal", decimal.Decimal("128"), "00 00 00 00 00 80"),
        # date: u32 of days since the epoch + 2**31
        ("date", 0, "80 00 00 00"),
        ("date", 1, "80 00 00 01"),
        ("date", -1, "7f ff ff ff"),
        ("date", -(2**31), "00 00 00 00"),
        ("date", 2**31 - 1, "ff ff ff ff"),
        ("time", 1, "00 00 00 00 00 00 00 01"),
        ("time", NANOS_PER_DAY - 1, "00 00 4e 94 91 4e ff ff"),
        # duration: zig-zag vints months, days, nanoseconds
        ("duration", Duration(1, -2, 3), "02 03 06"),
        ("duration", Duration(0, 0, 0), "00 00 00"),
        ("duration", Duration(-1, -1, -1), "01 01 01"),
        ("duration", Duration(0, 0, 1_000_000), "00 00 de 84 80"),
        ("duration", Duration(64, 0, 0), "80 80 00 00"),
        ("ascii", "abc", "61 62 63"),
        ("text", "é€", "c3 a9 e2 82 ac"),
        ("blob", b"\x00\xff", "00 ff"),
        ("uuid", uuid.UUID("00112233-4455-6677-8899-aabbccddeeff"), "00112233445566778899aabbccddeeff"),
        ("inet", ipaddress.ip_address("127.0.0.1"), "7f 00 00 01"),
        ("inet", ipaddress.ip_address("::1"), "00" * 15 + "01"),
        ("inet", ipaddress.ip_address("::ffff:1.2.3.4"), "00" * 10 + "ffff 01020304"),
        ("float", 1.0, "3f 80 00 00"),
        ("double", -2.0, "c0 00 00 00 00 00 00 00"),
        # frozen collections: i32 count, then i32-length-prefixed elements
        ("frozen<list<int>>", [1, 2], "00000002 00000004 00000001 00000004 00000002"),
        ("frozen<list<int>>", [], "00000000"),
        ("frozen<list<text>>", ["", "a"], "00000002 00000000 00000001 61"),
        ("frozen<set<int>>", [-1, 0, 1], "00000003 00000004 ffffffff 00000004 00000000 00000004 00000001"),
        (
            "frozen<map<text, int>>",
            [("a", 2), ("b", 1)],
            "00000002 00000001 61 00000004 00000002 00000001 62 00000004 00000001",
        ),
        ("frozen<list<frozen<list<int>>>>", [[7]], "00000001 0000000c 00000001 00000004 00000007"),
        # tuples and UDTs: i32-length-prefixed components, -1 for null
        ("frozen<tuple<int, text>>", (1, "a"), "00000004 00000001 00000001 61"),
        ("frozen<tuple<int, text>>", (1, None), "00000004 00000001 ffffffff"),
        ("frozen<tuple<int, text>>", (None, None), "ffffffff ffffffff"),
        (
            "frozen<point>",
            {"x": 1, "Label": None, "z": 0.5},
            "00000004 00000001 ffffffff 00000008 3fe0000000000000",
        ),
        # vectors: fixed-length elements concatenated, others with an unsigned vint length
        ("vector<float, 2>", [1.0, 2.0], "3f800000 40000000"),
        ("vector<int, 3>", [1, -1, 0], "00000001 ffffffff 00000000"),
        ("vector<text, 2>", ["a", "bc"], "01 61 02 62 63"),
        ("vector<smallint, 2>", [1, -1], "02 0001 02 ffff"),
        ("vector<vector<float, 1>, 2>", [[1.0], [2.0]], "3f800000 40000000"),
    ],
)
def test_known_encoding(type_text: str, value: Any, encoded: str) -> None:
    cql_type = t(type_text)
    assert serialize(cql_type, value).hex() == h(encoded).hex()
    decoded = deserialize(cql_type, h(encoded))
    assert decoded == value
    if isinstance(value, decimal.Decimal):
        # The scale is kept, not only the numeric value.
        assert str(decoded) == str(value)


def test_boolean_decodes_any_nonzero_byte_as_true() -> None:
    assert deserialize(t("boolean"), b"\x05") is True
    assert deserialize(t("boolean"), b"\x00") is False


def test_varint_decodes_non_minimal_encodings() -> None:
    assert deserialize(t("varint"), h("00 00 01")) == 1
    assert deserialize(t("varint"), h("ff ff ff")) == -1


def test_map_serializes_each_key_once() -> None:
    raw = serialize(t("frozen<map<int, int>>"), [(1, 10), (1, 11)])
    assert deserialize(t("frozen<map<int, int>>"), raw) == [(1, 11)]


def test_tuple_and_udt_trailing_components_may_be_missing() -> None:
    assert deserialize(t("frozen<tuple<int, text, int>>"), h("00000004 00000007")) == (7, None, None)
    assert deserialize(t("frozen<point>"), h("00000004 00000003")) == {"x": 3, "Label": None, "z": None}
    assert deserialize(t("frozen<point>"), h("ffffffff 00000001 62")) == {"x": None, "Label": "b", "z": None}


def test_non_frozen_udt_values_decode_like_frozen_ones() -> None:
    raw = h("00000004 00000001 00000000")
    assert deserialize(t("point"), raw) == {"x": 1, "Label": "", "z": None}


def test_udt_encoder_writes_null_for_missing_fields() -> None:
    assert serialize(t("frozen<point>"), {"x": 2}) == h("00000004 00000002 ffffffff ffffffff")


# --------------------------------------------------------------------------------------------
# EMPTY


@pytest.mark.parametrize(
    "type_text",
    [
        "int",
        "bigint",
        "smallint",
        "tinyint",
        "boolean",
        "float",
        "double",
        "varint",
        "decimal",
        "uuid",
        "timeuuid",
        "timestamp",
        "date",
        "time",
        "duration",
        "inet",
        "counter",
        "empty",
        "frozen<list<int>>",
        "frozen<set<int>>",
        "frozen<map<int, int>>",
        "frozen<tuple<int>>",
        "frozen<point>",
        "vector<float, 2>",
        "vector<text, 2>",
    ],
)
def test_zero_length_is_empty(type_text: str) -> None:
    cql_type = t(type_text)
    assert deserialize(cql_type, b"") is EMPTY
    assert serialize(cql_type, EMPTY) == b""


@pytest.mark.parametrize(("type_text", "value"), [("text", ""), ("ascii", ""), ("blob", b"")])
def test_zero_length_strings_are_empty_strings(type_text: str, value: Any) -> None:
    decoded = deserialize(t(type_text), b"")
    assert decoded == value
    assert type(decoded) is type(value)


def test_empty_is_distinct_and_singleton() -> None:
    assert EMPTY is not None
    assert EMPTY != 0
    assert EMPTY != b""
    assert repr(EMPTY) == "EMPTY"
    assert type(EMPTY)() is EMPTY


def test_empty_elements_inside_collections() -> None:
    # A zero-length element is a valid serialization (e.g. an empty int in a frozen list).
    assert deserialize(t("frozen<list<int>>"), h("00000001 00000000")) == [EMPTY]
    assert deserialize(t("frozen<tuple<int, int>>"), h("00000000 00000004 00000001")) == (EMPTY, 1)


# --------------------------------------------------------------------------------------------
# Malformed input


@pytest.mark.parametrize(
    ("type_text", "raw"),
    [
        ("int", "00 00 00"),
        ("int", "00 00 00 00 00"),
        ("bigint", "00" * 7),
        ("smallint", "00"),
        ("smallint", "00 00 00"),
        ("tinyint", "00 00"),
        ("boolean", "00 01"),
        ("float", "00 00 00"),
        ("double", "00" * 9),
        ("uuid", "00" * 15),
        ("timeuuid", "00" * 17),
        ("timestamp", "00" * 4),
        ("date", "00 00 00"),
        ("time", "00" * 7),
        ("inet", "01 02 03 04 05"),
        ("inet", "00" * 8),
        ("decimal", "00 00 01"),
        ("counter", "00"),
        # collections
        ("frozen<list<int>>", "00 00 00"),
        ("frozen<list<int>>", "ffffffff"),
        ("frozen<list<int>>", "00000002 00000004 00000001"),
        ("frozen<list<int>>", "00000002 00000004 00000001 00000004 000000"),
        ("frozen<list<int>>", "00000001 00000004 00000001 ff"),
        ("frozen<list<int>>", "00000001 ffffffff"),
        ("frozen<list<int>>", "00000001 00000002 0001"),
        ("frozen<list<int>>", "00000001 0000"),
        ("frozen<set<text>>", "00000001 00000001 ff"),
        ("frozen<map<int, int>>", "00000001 00000004 00000001"),
        ("frozen<map<int, int>>", "00000001 00000004 00000001 ffffffff"),
        ("frozen<map<int, int>>", "00000001 00000004 00000001 00000004 00000001 00"),
        # tuples
        ("frozen<tuple<int>>", "00000004 00000001 00000004 00000001"),
        ("frozen<tuple<int, int>>", "00000004 000000"),
        ("frozen<tuple<int, int>>", "00000004 00000001 00"),
        ("frozen<tuple<int, int>>", "00000004 00000001 00000003 000000"),
        ("frozen<point>", "00000004 00000001 00000000 00000000 00000000"),
        # vectors
        ("vector<float, 2>", "00" * 7),
        ("vector<float, 2>", "00" * 9),
        ("vector<text, 2>", "01 61"),
        ("vector<text, 2>", "01 61 05 62"),
        ("vector<text, 2>", "01 61 01 62 00"),
        ("vector<text, 2>", "01 61 c0"),
        # duration
        ("duration", "02 04"),
        ("duration", "02 04 06 00"),
        ("duration", "02 04 c0"),
    ],
)
def test_malformed_bytes_raise(type_text: str, raw: str) -> None:
    with pytest.raises(ValueDecodeError):
        deserialize(t(type_text), h(raw))


def test_non_utf8_text_raises() -> None:
    with pytest.raises(ValueDecodeError, match="UTF-8"):
        deserialize(t("text"), b"ok\xff")
    with pytest.raises(ValueDecodeError):
        deserialize(t("text"), b"\xc3")  # truncated two-byte sequence
    with pytest.raises(ValueDecodeError):
        deserialize(t("text"), b"\xed\xa0\x80")  # an encoded surrogate


def test_non_ascii_ascii_raises() -> None:
    with pytest.raises(ValueDecodeError):
        deserialize(t("ascii"), b"ab\x80")
    with pytest.raises(ValueDecodeError):
        deserialize(t("ascii"), "é".encode())


@pytest.mark.parametrize("version", [3, 4, 5])
def test_timeuuid_must_be_version_1(version: int) -> None:
    other = {
        3: uuid.uuid3(uuid.NAMESPACE_DNS, "x"),
        4: uuid.UUID(int=0, version=4),
        5: uuid.uuid5(uuid.NAMESPACE_DNS, "x"),
    }
    with pytest.raises(ValueDecodeError, match="version"):
        deserialize(t("timeuuid"), other[version].bytes)
    # uuid takes any version.
    assert deserialize(t("uuid"), other[version].bytes) == other[version]


@pytest.mark.parametrize("nanos", [-1, NANOS_PER_DAY, NANOS_PER_DAY + 1, -(2**63), 2**63 - 1])
def test_time_out_of_range_raises(nanos: int) -> None:
    with pytest.raises(ValueDecodeError):
        deserialize(t("time"), struct.pack(">q", nanos))


def test_time_bounds_are_valid() -> None:
    assert deserialize(t("time"), struct.pack(">q", 0)) == 0
    assert deserialize(t("time"), struct.pack(">q", NANOS_PER_DAY - 1)) == NANOS_PER_DAY - 1


# --------------------------------------------------------------------------------------------
# Counters


def _shard(counter_id: int, clock: int, count: int) -> bytes:
    return uuid.UUID(int=counter_id).bytes + struct.pack(">qq", clock, count)


def test_counter_total_sums_every_shard() -> None:
    # Header: 2 special shards (a global one at index 0 → -32768 + 0, a local one at index 2).
    header = struct.pack(">hhh", 2, -32768, 2)
    context = header + _shard(1, 10, 5) + _shard(2, 3, -2) + _shard(3, 7, 40)
    assert counter_total(context) == 43
    assert deserialize(t("counter"), context) == 43


def test_counter_total_without_header_entries() -> None:
    context = struct.pack(">h", 0) + _shard(9, 1, -7)
    assert counter_total(context) == -7
    assert counter_total(struct.pack(">h", 0)) == 0


def test_counter_bare_long_is_its_own_value() -> None:
    assert deserialize(t("counter"), struct.pack(">q", -12)) == -12


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00",
        struct.pack(">h", -1) + _shard(1, 1, 1),
        struct.pack(">h", 0) + _shard(1, 1, 1)[:-1],
        struct.pack(">h", 0) + _shard(1, 1, 1) + b"\x00",
        struct.pack(">hh", 5, -32768),
    ],
)
def test_counter_total_rejects_malformed_contexts(raw: bytes) -> None:
    with pytest.raises(ValueDecodeError):
        counter_total(raw)


# --------------------------------------------------------------------------------------------
# Composite partition keys


def test_join_composite_layout() -> None:
    assert join_composite([b"a", b"", b"\x00\x01"]) == h("0001 61 00 0000 00 0002 0001 00")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5))
def test_composite_key_round_trip(parts: list[bytes]) -> None:
    assert split_composite(join_composite(parts), len(parts)) == parts


@pytest.mark.parametrize(
    ("raw", "count"),
    [
        (h("0001 61 00"), 2),
        (h("0001 61 00 0001 62 00"), 1),
        (h("0001 61 00 00"), 2),
        (h("0002 61 00"), 1),
        (h("0001 61"), 1),
        (h("0005 6162"), 1),
    ],
)
def test_split_composite_errors(raw: bytes, count: int) -> None:
    with pytest.raises(ValueDecodeError):
        split_composite(raw, count)


# --------------------------------------------------------------------------------------------
# Round trips


def _same_float_bits(cql_type: CqlType, value: float) -> None:
    raw = serialize(cql_type, value)
    decoded = deserialize(cql_type, raw)
    assert isinstance(decoded, float)
    assert serialize(cql_type, decoded) == raw


@settings(max_examples=150, deadline=None)
@given(st.floats(width=32, allow_nan=True, allow_infinity=True))
def test_float_round_trip_bytes(value: float) -> None:
    _same_float_bits(t("float"), value)


@settings(max_examples=150, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_double_round_trip_bytes(value: float) -> None:
    _same_float_bits(t("double"), value)
    decoded = deserialize(t("double"), serialize(t("double"), value))
    assert decoded == value or (math.isnan(decoded) and math.isnan(value))


@st.composite
def _decimals(draw: st.DrawFn) -> decimal.Decimal:
    unscaled = draw(st.integers(-(10**40), 10**40))
    scale = draw(st.integers(-(2**31), 2**31 - 1))
    sign = 1 if unscaled < 0 else 0
    return decimal.Decimal((sign, tuple(int(d) for d in str(abs(unscaled))), -scale))


NATIVE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "ascii": st.text(alphabet=st.characters(max_codepoint=127)),
    "text": st.text(),
    "blob": st.binary(),
    "boolean": st.booleans(),
    "tinyint": st.integers(-(2**7), 2**7 - 1),
    "smallint": st.integers(-(2**15), 2**15 - 1),
    "int": st.integers(-(2**31), 2**31 - 1),
    "bigint": st.integers(-(2**63), 2**63 - 1),
    "counter": st.integers(-(2**63), 2**63 - 1),
    "varint": st.integers(-(2**200), 2**200),
    "decimal": _decimals(),
    "uuid": st.uuids(),
    "timeuuid": st.uuids(version=1),
    "timestamp": st.integers(-(2**63), 2**63 - 1),
    "date": st.integers(-(2**31), 2**31 - 1),
    "time": st.integers(0, NANOS_PER_DAY - 1),
    "duration": st.builds(
        Duration,
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**63), 2**63 - 1),
    ),
    "inet": st.ip_addresses(),
}


@pytest.mark.parametrize("name", sorted(NATIVE_VALUES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_native_round_trip(name: str, data: st.DataObject) -> None:
    cql_type = t(name)
    value = data.draw(NATIVE_VALUES[name])
    decoded = deserialize(cql_type, serialize(cql_type, value))
    assert decoded == value
    assert type(decoded) is type(value)
    if name == "decimal":
        assert decoded.as_tuple().exponent == value.as_tuple().exponent


# Composite round trips over generated types. Floats are left out of the leaves so that
# equality is meaningful (NaN != NaN); their bytes are covered above.
_EXACT_LEAVES = [n for n in NATIVE_VALUES if n not in ("counter",)]


def _value_strategy(cql_type: CqlType) -> st.SearchStrategy[Any]:
    if isinstance(cql_type, NativeType):
        return NATIVE_VALUES[cql_type.name]
    if isinstance(cql_type, ListType):
        return st.lists(_value_strategy(cql_type.element), max_size=4)
    if isinstance(cql_type, VectorType):
        elem = _value_strategy(cql_type.element)
        return st.lists(elem, min_size=cql_type.dimension, max_size=cql_type.dimension)
    if isinstance(cql_type, TupleType):
        return st.tuples(*(st.none() | _value_strategy(e) for e in cql_type.elements))
    if isinstance(cql_type, UserType):
        return st.fixed_dictionaries(
            {
                n: st.none() | _value_strategy(ft)
                for n, ft in zip(cql_type.field_names, cql_type.field_types, strict=True)
            }
        )
    raise AssertionError(f"no strategy for {cql_type}")


_ORDERED_TYPES = st.recursive(
    st.sampled_from(_EXACT_LEAVES).map(NativeType),
    lambda inner: st.one_of(
        inner.map(lambda e: ListType(e, True)),
        st.lists(inner, min_size=1, max_size=3).map(lambda es: TupleType(tuple(es))),
        st.tuples(inner, st.integers(1, 3)).map(lambda e: VectorType(e[0], e[1])),
        st.lists(inner, min_size=1, max_size=3).map(
            lambda es: UserType("ks", "u", tuple(f"f{i}" for i in range(len(es))), tuple(es), True)
        ),
    ),
    max_leaves=5,
)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), cql_type=_ORDERED_TYPES)
def test_composite_round_trip(data: st.DataObject, cql_type: CqlType) -> None:
    value = data.draw(_value_strategy(cql_type))
    raw = serialize(cql_type, value)
    assert deserialize(cql_type, raw) == value


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8))
def test_set_of_int_is_serialized_sorted_and_unique(values: list[int]) -> None:
    cql_type = t("frozen<set<int>>")
    assert deserialize(cql_type, serialize(cql_type, values)) == sorted(set(values))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=5), max_size=8))
def test_set_of_text_is_serialized_in_utf8_byte_order(values: list[str]) -> None:
    cql_type = t("frozen<set<text>>")
    expected = sorted(set(values), key=lambda s: s.encode("utf-8"))
    assert deserialize(cql_type, serialize(cql_type, values)) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.text(max_size=3)), max_size=8))
def test_map_keys_are_serialized_sorted(entries: list[tuple[int, str]]) -> None:
    cql_type = t("frozen<map<bigint, text>>")
    expected = sorted(dict(entries).items())
    assert deserialize(cql_type, serialize(cql_type, entries)) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(width=32), max_size=6))
def test_set_of_float_follows_java_float_compare(values: list[float]) -> None:
    cql_type = t("frozen<set<float>>")
    decoded = deserialize(cql_type, serialize(cql_type, values))
    keys = [comparator_key(t("float"))(serialize(t("float"), v)) for v in decoded]
    assert keys == sorted(keys)
    assert len({serialize(t("float"), v) for v in decoded}) == len(decoded)


def test_set_of_timeuuid_is_sorted_by_time_not_bytes() -> None:
    early = uuid.UUID("ffffffff-0000-1000-8000-000000000000")  # time_low high, time_hi low
    late = uuid.UUID("00000000-0000-1001-8000-000000000000")
    assert early.time < late.time
    assert early.bytes > late.bytes
    cql_type = t("frozen<set<timeuuid>>")
    assert deserialize(cql_type, serialize(cql_type, [late, early])) == [early, late]


def test_set_of_tuples_sorts_nulls_first() -> None:
    cql_type = t("frozen<set<frozen<tuple<int, text>>>>")
    values = [(1, "b"), (1, None), (-5, "z"), (1, "a")]
    assert deserialize(cql_type, serialize(cql_type, values)) == [(-5, "z"), (1, None), (1, "a"), (1, "b")]


# --------------------------------------------------------------------------------------------
# comparator_key ordering facts


def _sorted_by_comparator(type_text: str, values: list[Any]) -> list[Any]:
    cql_type = t(type_text)
    key = comparator_key(cql_type)
    return sorted(values, key=lambda v: key(serialize(cql_type, v)))


@pytest.mark.parametrize("type_text", ["tinyint", "smallint", "int", "bigint", "varint", "timestamp"])
def test_integers_compare_signed(type_text: str) -> None:
    values = [1, -1, 0, 100, -100]
    assert _sorted_by_comparator(type_text, values) == [-100, -1, 0, 1, 100]


def test_varint_compares_numerically_across_lengths() -> None:
    assert _sorted_by_comparator("varint", [256, -129, 2**70, -(2**70), 1]) == [-(2**70), -129, 1, 256, 2**70]


def test_blob_compares_unsigned_bytes() -> None:
    values = [b"\x80", b"\x7f", b"", b"\x7f\x00", b"\xff"]
    assert _sorted_by_comparator("blob", values) == [b"", b"\x7f", b"\x7f\x00", b"\x80", b"\xff"]


@pytest.mark.parametrize("type_text", ["text", "ascii"])
def test_text_compares_unsigned_bytes(type_text: str) -> None:
    values = ["b", "a", "B", "ab", ""] + (["é", "z"] if type_text == "text" else [])
    expected = sorted(values, key=lambda s: s.encode("utf-8"))
    assert _sorted_by_comparator(type_text, values) == expected
    if type_text == "text":
        assert expected.index("é") > expected.index("z")


def test_date_compares_as_days() -> None:
    assert _sorted_by_comparator("date", [1, -1, 0, -(2**31), 2**31 - 1]) == [-(2**31), -1, 0, 1, 2**31 - 1]


def test_timeuuid_compares_time_first_then_signed_bytes() -> None:
    a = uuid.UUID("ffffffff-ffff-1000-8000-000000000000")
    b = uuid.UUID("00000000-0000-1001-0000-000000000000")
    assert _sorted_by_comparator("timeuuid", [b, a]) == [a, b]
    # Same time: the clock-sequence/node bytes compare as *signed* bytes (0x80 < 0x7f).
    same_time_hi = uuid.UUID("00000000-0000-1000-8000-000000000000")
    same_time_lo = uuid.UUID("00000000-0000-1000-7f00-000000000000")
    assert _sorted_by_comparator("timeuuid", [same_time_lo, same_time_hi]) == [same_time_hi, same_time_lo]


def test_decimal_compares_numerically() -> None:
    values = [decimal.Decimal(v) for v in ["1E+1", "9", "-0.5", "0.00", "1E-7", "-100"]]
    ordered = _sorted_by_comparator("decimal", values)
    assert [str(v) for v in ordered] == ["-100", "-0.5", "0.00", "1E-7", "9", "1E+1"]


@pytest.mark.parametrize("type_text", ["float", "double"])
def test_floats_compare_like_java(type_text: str) -> None:
    inf = math.inf
    values = [math.nan, 1.0, -0.0, 0.0, -inf, inf, -1.5]
    ordered = _sorted_by_comparator(type_text, values)
    assert ordered[:3] == [-inf, -1.5, -0.0]
    assert math.copysign(1.0, ordered[2]) == -1.0
    assert ordered[3] == 0.0 and math.copysign(1.0, ordered[3]) == 1.0
    assert ordered[4:6] == [1.0, inf]
    assert math.isnan(ordered[6])


def test_empty_values_sort_first() -> None:
    for type_text, value in [
        ("int", 0),
        ("float", -math.inf),
        ("decimal", decimal.Decimal("-1")),
        ("text", ""),
    ]:
        cql_type = t(type_text)
        key = comparator_key(cql_type)
        assert key(b"") <= key(serialize(cql_type, value))


def test_frozen_list_compares_elementwise_then_by_length() -> None:
    values = [[1, 2], [1], [], [0, 5], [-1]]
    assert _sorted_by_comparator("frozen<list<int>>", values) == [[], [-1], [0, 5], [1], [1, 2]]
