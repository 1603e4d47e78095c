"""CQL type strings: parsing, printing, and the per-type facts the decoder relies on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_platform.schema.types import (
    MARSHAL_CLASSES,
    NATIVE_TYPES,
    RESERVED_KEYWORDS,
    CqlType,
    ListType,
    MapType,
    NativeType,
    SetType,
    TupleType,
    TypeParseError,
    UserType,
    VectorType,
    parse_type,
    quote_identifier,
)

M = "org.apache.cassandra.db.marshal."

INT = NativeType("int")
TEXT = NativeType("text")
FLOAT = NativeType("float")

ADDRESS = UserType("shop", "address", ("street", "city", "zipCode"), (TEXT, TEXT, INT))
# A case-sensitive UDT name (must be quoted in CQL) holding a frozen reference to another UDT.
MIXED = UserType("shop", "Mixed Case", ("home", "n"), (ADDRESS.freeze(), INT))
UDTS: dict[str, UserType] = {"address": ADDRESS, "Mixed Case": MIXED}


# --------------------------------------------------------------------------------------------
# Native types


@pytest.mark.parametrize("name", sorted(NATIVE_TYPES))
def test_every_native_type_parses_to_itself(name: str) -> None:
    assert parse_type(name) == NativeType(name)
    assert parse_type(name.upper()) == NativeType(name)
    assert parse_type(f"  {name}\n") == NativeType(name)
    assert parse_type(name).cql() == name


@pytest.mark.parametrize("text", ["varchar", "VARCHAR", "VarChar"])
def test_varchar_is_an_alias_of_text(text: str) -> None:
    assert parse_type(text) == TEXT
    assert parse_type(text).cql() == "text"


# --------------------------------------------------------------------------------------------
# Collections, tuples, vectors, UDT references


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("list<int>", ListType(INT, False)),
        ("set<text>", SetType(TEXT, False)),
        ("map<text, int>", MapType(TEXT, INT, False)),
        ("map<text,int>", MapType(TEXT, INT, False)),
        ("MAP < TEXT , INT >", MapType(TEXT, INT, False)),
        ("frozen<list<int>>", ListType(INT, True)),
        ("frozen<set<text>>", SetType(TEXT, True)),
        ("frozen<map<text, int>>", MapType(TEXT, INT, True)),
        # Elements of collections are frozen even without the keyword, as CQL requires.
        ("list<frozen<list<int>>>", ListType(ListType(INT, True), False)),
        ("map<text, frozen<set<int>>>", MapType(TEXT, SetType(INT, True), False)),
        (
            "frozen<map<frozen<list<int>>, frozen<set<text>>>>",
            MapType(ListType(INT, True), SetType(TEXT, True), True),
        ),
        (
            "frozen<list<frozen<list<frozen<list<int>>>>>>",
            ListType(ListType(ListType(INT, True), True), True),
        ),
        ("tuple<int, text>", TupleType((INT, TEXT))),
        ("frozen<tuple<int, text>>", TupleType((INT, TEXT))),
        (
            "frozen<tuple<text, int, frozen<tuple<timestamp>>>>",
            TupleType((TEXT, INT, TupleType((NativeType("timestamp"),)))),
        ),
        ("frozen<tuple<list<int>>>", TupleType((ListType(INT, True),))),
        ("vector<float, 3>", VectorType(FLOAT, 3)),
        ("vector<text, 2>", VectorType(TEXT, 2)),
        ("vector<frozen<list<int>>, 1>", VectorType(ListType(INT, True), 1)),
    ],
)
def test_parse_composite_types(text: str, expected: CqlType) -> None:
    assert parse_type(text) == expected


def test_udt_reference_bare_is_multicell_and_frozen_when_nested() -> None:
    assert parse_type("address", UDTS) == ADDRESS
    assert parse_type("address", UDTS).is_multicell
    assert parse_type("frozen<address>", UDTS) == ADDRESS.freeze()
    assert parse_type("list<frozen<address>>", UDTS) == ListType(ADDRESS.freeze(), False)
    # Inside a collection or tuple a UDT is frozen whether or not the keyword is written.
    assert parse_type("list<address>", UDTS) == ListType(ADDRESS.freeze(), False)
    assert parse_type("frozen<tuple<address, int>>", UDTS) == TupleType((ADDRESS.freeze(), INT))
    assert parse_type("map<frozen<address>, address>", UDTS) == MapType(
        ADDRESS.freeze(), ADDRESS.freeze(), False
    )


def test_udt_reference_qualified_with_keyspace() -> None:
    assert parse_type("shop.address", UDTS) == ADDRESS
    assert parse_type("frozen<shop.address>", UDTS) == ADDRESS.freeze()


def test_udt_reference_quoted_is_case_sensitive() -> None:
    assert parse_type('"Mixed Case"', UDTS) == MIXED
    assert parse_type('frozen<"Mixed Case">', UDTS) == MIXED.freeze()
    upper = UserType("shop", "Address", ("x",), (INT,))
    types = {"address": ADDRESS, "Address": upper}
    assert parse_type('"Address"', types) == upper
    # Unquoted names fold to lower case, like CQL does.
    assert parse_type("Address", types) == ADDRESS
    assert parse_type("ADDRESS", types) == ADDRESS
    with pytest.raises(TypeParseError):
        parse_type('"ADDRESS"', types)


def test_udt_name_with_doubled_quote() -> None:
    odd = UserType("ks", 'say "hi"', ("x",), (INT,))
    assert parse_type('frozen<"say ""hi""">', {odd.name: odd}) == odd.freeze()
    assert odd.freeze().cql() == 'frozen<"say ""hi""">'


def test_udt_named_like_a_collection_keyword_is_resolved_as_a_udt() -> None:
    named_list = UserType("ks", "list", ("x",), (INT,))
    types = {"list": named_list}
    assert parse_type("list", types) == named_list
    assert parse_type("frozen<list>", types) == named_list.freeze()
    assert parse_type("list<frozen<list>>", types) == ListType(named_list.freeze(), False)


# --------------------------------------------------------------------------------------------
# Cassandra's internal marshal form


@pytest.mark.parametrize(("cls", "name"), sorted(MARSHAL_CLASSES.items()))
def test_marshal_native_classes(cls: str, name: str) -> None:
    assert parse_type(f"'{M}{cls}'") == NativeType(name)
    # The package prefix may be left out, as Cassandra's TypeParser allows.
    assert parse_type(f"'{cls}'") == NativeType(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"'{M}ListType({M}Int32Type)'", ListType(INT, False)),
        (f"'{M}SetType({M}UTF8Type)'", SetType(TEXT, False)),
        (f"'{M}MapType({M}UTF8Type,{M}Int32Type)'", MapType(TEXT, INT, False)),
        (f"'{M}FrozenType({M}ListType({M}Int32Type))'", ListType(INT, True)),
        (f"'{M}FrozenType({M}MapType({M}UTF8Type, {M}Int32Type))'", MapType(TEXT, INT, True)),
        (f"'{M}ReversedType({M}TimestampType)'", NativeType("timestamp")),
        (f"'{M}TupleType({M}Int32Type,{M}UTF8Type)'", TupleType((INT, TEXT))),
        (
            f"'{M}TupleType({M}ListType({M}Int32Type),{M}UTF8Type)'",
            TupleType((ListType(INT, True), TEXT)),
        ),
        (f"'{M}VectorType({M}FloatType,3)'", VectorType(FLOAT, 3)),
        (f"'{M}ListType({M}FrozenType({M}ListType({M}Int32Type)))'", ListType(ListType(INT, True), False)),
    ],
)
def test_marshal_composite_classes(text: str, expected: CqlType) -> None:
    assert parse_type(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Cassandra's ListType/SetType/MapType.getInstance(TypeParser) freeze their element
        # types (``l.get(0).freeze()``), so a nested collection is frozen even when the
        # string has no FrozenType around it.
        (f"'{M}ListType({M}ListType({M}Int32Type))'", ListType(ListType(INT, True), False)),
        (f"'{M}SetType({M}MapType({M}Int32Type,{M}Int32Type))'", SetType(MapType(INT, INT, True), False)),
        (f"'{M}MapType({M}UTF8Type,{M}SetType({M}Int32Type))'", MapType(TEXT, SetType(INT, True), False)),
        (
            f"'{M}FrozenType({M}ListType({M}ListType({M}Int32Type)))'",
            ListType(ListType(INT, True), True),
        ),
    ],
)
def test_marshal_collection_elements_are_frozen(text: str, expected: CqlType) -> None:
    assert parse_type(text) == expected


def test_marshal_type_inside_a_cql_type() -> None:
    assert parse_type(f"list<'{M}Int32Type'>") == ListType(INT, False)


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "text",
    [
        "address",  # no UDTs given
        "frozen<nosuchtype>",
        "list<nosuchtype>",
        '"Int"',  # quoted: a (missing) UDT, not the native type
    ],
)
def test_unknown_udt_raises(text: str) -> None:
    with pytest.raises(TypeParseError, match="unknown type"):
        parse_type(text, {"other": ADDRESS})


def test_unknown_udt_message_names_the_keyspace() -> None:
    with pytest.raises(TypeParseError, match=r"keyspace shop"):
        parse_type("frozen<missing>", UDTS, keyspace="shop")


@pytest.mark.parametrize(
    "text",
    ["vector<float, 0>", "vector<float, -1>", "vector<float, x>", "vector<float>", "vector<float, 1.5>"],
)
def test_bad_vector_dimension_raises(text: str) -> None:
    with pytest.raises(TypeParseError):
        parse_type(text)


@pytest.mark.parametrize("dimension", ["0", "x", "-2"])
def test_bad_marshal_vector_dimension_raises_type_parse_error(dimension: str) -> None:
    with pytest.raises(TypeParseError):
        parse_type(f"'{M}VectorType({M}FloatType,{dimension})'")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "@",
        "int int",
        "list<int",
        "list<int>>",
        "list<>",
        "map<int>",
        "map<int, int, int>",
        "frozen<>",
        "tuple<>",
        "list<int;>",
        f"'{M}NoSuchType'",
        f"'{M}DynamicCompositeType(a=>{M}Int32Type)'",
        f"'{M}ListType({M}Int32Type,{M}Int32Type)'",
        "'not a class'",
    ],
)
def test_garbage_raises(text: str) -> None:
    with pytest.raises(TypeParseError):
        parse_type(text, UDTS)


# --------------------------------------------------------------------------------------------
# Printing


@pytest.mark.parametrize(
    ("cql_type", "text"),
    [
        (ListType(INT, False), "list<int>"),
        (ListType(INT, True), "frozen<list<int>>"),
        (MapType(TEXT, ListType(INT, True), False), "map<text, frozen<list<int>>>"),
        (SetType(TupleType((INT, TEXT)), True), "frozen<set<frozen<tuple<int, text>>>>"),
        (
            TupleType((TEXT, INT, TupleType((NativeType("timestamp"),)))),
            "frozen<tuple<text, int, frozen<tuple<timestamp>>>>",
        ),
        (VectorType(FLOAT, 3), "vector<float, 3>"),
        (ADDRESS, "address"),
        (ADDRESS.freeze(), "frozen<address>"),
        (MIXED.freeze(), 'frozen<"Mixed Case">'),
        (ListType(ADDRESS.freeze(), False), "list<frozen<address>>"),
    ],
)
def test_cql_printing(cql_type: CqlType, text: str) -> None:
    assert cql_type.cql() == text
    assert str(cql_type) == text
    assert parse_type(text, UDTS) == cql_type


_NATIVE_LEAVES = st.sampled_from(sorted(NATIVE_TYPES)).map(NativeType)
_UDT_LEAVES = st.sampled_from([ADDRESS.freeze(), MIXED.freeze()])


def _frozen_types() -> st.SearchStrategy[CqlType]:
    """Types as they appear nested: every collection and UDT frozen."""
    return st.recursive(
        st.one_of(_NATIVE_LEAVES, _UDT_LEAVES),
        lambda inner: st.one_of(
            inner.map(lambda t: ListType(t, True)),
            inner.map(lambda t: SetType(t, True)),
            st.tuples(inner, inner).map(lambda kv: MapType(kv[0], kv[1], True)),
            st.lists(inner, min_size=1, max_size=3).map(lambda ts: TupleType(tuple(ts))),
            st.tuples(inner, st.integers(1, 9)).map(lambda e: VectorType(e[0], e[1])),
        ),
        max_leaves=6,
    )


def _column_types() -> st.SearchStrategy[CqlType]:
    """Top-level types: additionally non-frozen collections and UDTs."""
    nested = _frozen_types()
    return st.one_of(
        nested,
        nested.map(lambda t: ListType(t, False)),
        nested.map(lambda t: SetType(t, False)),
        st.tuples(nested, nested).map(lambda kv: MapType(kv[0], kv[1], False)),
        st.sampled_from([ADDRESS, MIXED]),
    )


@settings(max_examples=200, deadline=None)
@given(_column_types())
def test_cql_round_trip(cql_type: CqlType) -> None:
    text = cql_type.cql()
    assert parse_type(text, UDTS) == cql_type
    # Whitespace around the punctuation does not matter.
    spaced = text.replace("<", " < ").replace(">", " > ").replace(",", " , ")
    assert parse_type(spaced, UDTS) == cql_type


# --------------------------------------------------------------------------------------------
# fixed_length and is_multicell


@pytest.mark.parametrize(
    ("name", "length"),
    [
        ("boolean", 1),
        ("int", 4),
        ("bigint", 8),
        ("float", 4),
        ("double", 8),
        ("timestamp", 8),
        ("uuid", 16),
        ("timeuuid", 16),
        ("empty", 0),
        # Fixed-size on the wire but length-prefixed in serialization (valueLengthIfFixed = -1).
        ("smallint", None),
        ("tinyint", None),
        ("date", None),
        ("time", None),
        ("ascii", None),
        ("text", None),
        ("blob", None),
        ("varint", None),
        ("decimal", None),
        ("duration", None),
        ("inet", None),
        ("counter", None),
    ],
)
def test_native_fixed_length(name: str, length: int | None) -> None:
    assert parse_type(name).fixed_length == length
    assert not parse_type(name).is_multicell


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("vector<float, 3>", 12),
        ("vector<double, 2>", 16),
        ("vector<uuid, 5>", 80),
        ("vector<boolean, 7>", 7),
        ("vector<vector<int, 2>, 3>", 24),
        ("vector<text, 3>", None),
        ("vector<smallint, 3>", None),
        ("vector<vector<text, 1>, 2>", None),
        ("frozen<list<int>>", None),
        ("frozen<set<int>>", None),
        ("frozen<map<int, int>>", None),
        ("frozen<tuple<int, int>>", None),
        ("frozen<tuple<boolean>>", None),
        ("frozen<address>", None),
        ("list<int>", None),
        ("address", None),
    ],
)
def test_composite_fixed_length(text: str, length: int | None) -> None:
    assert parse_type(text, UDTS).fixed_length == length


@pytest.mark.parametrize(
    ("text", "multicell"),
    [
        ("list<int>", True),
        ("set<int>", True),
        ("map<int, int>", True),
        ("address", True),
        ("frozen<list<int>>", False),
        ("frozen<set<int>>", False),
        ("frozen<map<int, int>>", False),
        ("frozen<address>", False),
        ("frozen<tuple<int, int>>", False),
        ("tuple<int, int>", False),
        ("vector<float, 3>", False),
        ("counter", False),
    ],
)
def test_is_multicell(text: str, multicell: bool) -> None:
    parsed = parse_type(text, UDTS)
    assert parsed.is_multicell is multicell
    assert parsed.frozen is not multicell
    assert parsed.freeze().is_multicell is False


def test_freeze_keeps_the_element_types() -> None:
    assert ListType(INT, False).freeze() == ListType(INT, True)
    assert MapType(TEXT, INT, False).freeze() == MapType(TEXT, INT, True)
    assert ADDRESS.freeze().field_types == ADDRESS.field_types
    assert ADDRESS.freeze().field_names == ADDRESS.field_names
    assert INT.freeze() is INT


# --------------------------------------------------------------------------------------------
# Identifier quoting


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("abc", "abc"),
        ("a1_b2", "a1_b2"),
        ("x", "x"),
        # Unreserved keywords stay bare, like Cassandra's ColumnIdentifier.maybeQuote.
        ("static", "static"),
        ("key", "key"),
        ("type", "type"),
        ("ttl", "ttl"),
        ("Abc", '"Abc"'),
        ("ABC", '"ABC"'),
        ("1abc", '"1abc"'),
        ("_abc", '"_abc"'),
        ("a b", '"a b"'),
        ("a-b", '"a-b"'),
        ("é", '"é"'),
        ("", '""'),
        ('a"b', '"a""b"'),
        ('"', '""""'),
        ("select", '"select"'),
        ("table", '"table"'),
        ("primary", '"primary"'),
        ("with", '"with"'),
        ("nan", '"nan"'),
        ("infinity", '"infinity"'),
        # The whole string must match: a trailing newline is not part of a bare name.
        ("abc\n", '"abc\n"'),
    ],
)
def test_quote_identifier(name: str, quoted: str) -> None:
    assert quote_identifier(name) == quoted


@pytest.mark.parametrize("word", sorted(RESERVED_KEYWORDS))
def test_every_reserved_keyword_is_quoted(word: str) -> None:
    assert quote_identifier(word) == f'"{word}"'
