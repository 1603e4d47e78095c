"""CQL types: the model, the CQL type-string parser and printer.

A commit log carries no types at all; every value is interpreted through the table schema.
What matters for decoding is, per type: whether values have a fixed serialized length
(written raw) or are length-prefixed, and whether the column is multi-cell (non-frozen
collections and UDTs), whose cells carry a path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Native CQL types and the serialized length Cassandra treats as fixed
# (``AbstractType.valueLengthIfFixed``). smallint, tinyint, date and time are fixed-size but
# *not* fixed-length for serialization: they carry a length prefix.
FIXED_LENGTHS: dict[str, int] = {
    "boolean": 1,
    "int": 4,
    "bigint": 8,
    "float": 4,
    "double": 8,
    "timestamp": 8,
    "uuid": 16,
    "timeuuid": 16,
    "empty": 0,
}

NATIVE_TYPES = frozenset(
    {
        "ascii",
        "bigint",
        "blob",
        "boolean",
        "counter",
        "date",
        "decimal",
        "double",
        "duration",
        "float",
        "inet",
        "int",
        "smallint",
        "text",
        "time",
        "timestamp",
        "timeuuid",
        "tinyint",
        "uuid",
        "varint",
        "empty",
    }
)
_ALIASES = {"varchar": "text"}

# Cassandra marshal class names for native types, used to read custom-type strings and
# ``system_schema`` values written in the internal form.
MARSHAL_CLASSES: dict[str, str] = {
    "AsciiType": "ascii",
    "LongType": "bigint",
    "BytesType": "blob",
    "BooleanType": "boolean",
    "CounterColumnType": "counter",
    "SimpleDateType": "date",
    "DecimalType": "decimal",
    "DoubleType": "double",
    "DurationType": "duration",
    "FloatType": "float",
    "InetAddressType": "inet",
    "Int32Type": "int",
    "ShortType": "smallint",
    "UTF8Type": "text",
    "TimeType": "time",
    "TimestampType": "timestamp",
    "TimeUUIDType": "timeuuid",
    "ByteType": "tinyint",
    "UUIDType": "uuid",
    "IntegerType": "varint",
    "EmptyType": "empty",
}


class CqlType:
    """Base of all CQL types."""

    __slots__ = ()

    @property
    def fixed_length(self) -> int | None:
        """Serialized length when fixed (values are then written without a length prefix)."""
        return None

    @property
    def is_multicell(self) -> bool:
        """True for non-frozen collections and UDTs: their cells carry a path."""
        return False

    @property
    def is_collection(self) -> bool:
        return False

    @property
    def frozen(self) -> bool:
        return True

    def freeze(self) -> CqlType:
        """The frozen form of this type (identity for types that are always frozen)."""
        return self

    def cql(self) -> str:
        """The type as CQL prints it (``DESCRIBE`` form)."""
        raise NotImplementedError

    def subtypes(self) -> tuple[CqlType, ...]:
        return ()

    def __str__(self) -> str:
        return self.cql()


@dataclass(frozen=True, slots=True)
class NativeType(CqlType):
    name: str

    @property
    def fixed_length(self) -> int | None:
        return FIXED_LENGTHS.get(self.name)

    def cql(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ListType(CqlType):
    element: CqlType
    is_frozen: bool = False

    @property
    def is_multicell(self) -> bool:
        return not self.is_frozen

    @property
    def is_collection(self) -> bool:
        return True

    @property
    def frozen(self) -> bool:
        return self.is_frozen

    def freeze(self) -> ListType:
        return ListType(self.element, True)

    def cql(self) -> str:
        inner = f"list<{self.element.cql()}>"
        return f"frozen<{inner}>" if self.is_frozen else inner

    def subtypes(self) -> tuple[CqlType, ...]:
        return (self.element,)


@dataclass(frozen=True, slots=True)
class SetType(CqlType):
    element: CqlType
    is_frozen: bool = False

    @property
    def is_multicell(self) -> bool:
        return not self.is_frozen

    @property
    def is_collection(self) -> bool:
        return True

    @property
    def frozen(self) -> bool:
        return self.is_frozen

    def freeze(self) -> SetType:
        return SetType(self.element, True)

    def cql(self) -> str:
        inner = f"set<{self.element.cql()}>"
        return f"frozen<{inner}>" if self.is_frozen else inner

    def subtypes(self) -> tuple[CqlType, ...]:
        return (self.element,)


@dataclass(frozen=True, slots=True)
class MapType(CqlType):
    key: CqlType
    value: CqlType
    is_frozen: bool = False

    @property
    def is_multicell(self) -> bool:
        return not self.is_frozen

    @property
    def is_collection(self) -> bool:
        return True

    @property
    def frozen(self) -> bool:
        return self.is_frozen

    def freeze(self) -> MapType:
        return MapType(self.key, self.value, True)

    def cql(self) -> str:
        inner = f"map<{self.key.cql()}, {self.value.cql()}>"
        return f"frozen<{inner}>" if self.is_frozen else inner

    def subtypes(self) -> tuple[CqlType, ...]:
        return (self.key, self.value)


@dataclass(frozen=True, slots=True)
class TupleType(CqlType):
    elements: tuple[CqlType, ...]

    def cql(self) -> str:
        return f"frozen<tuple<{', '.join(e.cql() for e in self.elements)}>>"

    def subtypes(self) -> tuple[CqlType, ...]:
        return self.elements


@dataclass(frozen=True, slots=True)
class UserType(CqlType):
    keyspace: str
    name: str
    field_names: tuple[str, ...]
    field_types: tuple[CqlType, ...]
    is_frozen: bool = False

    @property
    def is_multicell(self) -> bool:
        return not self.is_frozen

    @property
    def frozen(self) -> bool:
        return self.is_frozen

    def freeze(self) -> UserType:
        return UserType(self.keyspace, self.name, self.field_names, self.field_types, True)

    def cql(self) -> str:
        inner = quote_identifier(self.name)
        return f"frozen<{inner}>" if self.is_frozen else inner

    def subtypes(self) -> tuple[CqlType, ...]:
        return self.field_types


@dataclass(frozen=True, slots=True)
class VectorType(CqlType):
    element: CqlType
    dimension: int

    @property
    def fixed_length(self) -> int | None:
        size = self.element.fixed_length
        return None if size is None else size * self.dimension

    def cql(self) -> str:
        return f"vector<{self.element.cql()}, {self.dimension}>"

    def subtypes(self) -> tuple[CqlType, ...]:
        return (self.element,)


def collection_cell_types(cql_type: CqlType) -> tuple[CqlType, CqlType | None]:
    """For a non-frozen list, set or map: the type of its cell paths and of its cell values.

    List cells are keyed by a timeuuid cell id; set cells by the element (no value); map
    cells by the key. (Non-frozen UDT cells are keyed by field index: see :func:`udt_field_type`.)
    """
    if isinstance(cql_type, ListType):
        return NativeType("timeuuid"), cql_type.element
    if isinstance(cql_type, SetType):
        return cql_type.element, None
    if isinstance(cql_type, MapType):
        return cql_type.key, cql_type.value
    raise TypeError(f"{cql_type.cql()} is not a collection")


def cell_value_type(cql_type: CqlType, path: bytes) -> CqlType | None:
    """Type of the value of a multi-cell column's cell at ``path`` (``None``: set cells, unknown UDT fields)."""
    if isinstance(cql_type, UserType):
        idx = int.from_bytes(path, "big") if len(path) == 2 else len(cql_type.field_types)
        return cql_type.field_types[idx] if idx < len(cql_type.field_types) else None
    return collection_cell_types(cql_type)[1]


def native(name: str) -> NativeType:
    """The native type called ``name`` (``varchar`` is ``text``)."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in NATIVE_TYPES:
        raise ValueError(f"unknown native type {name!r}")
    return NativeType(key)


# --------------------------------------------------------------------------------------------
# Identifiers


_UNQUOTED = re.compile(r"^[a-z][a-z0-9_]*$")

# CQL reserved keywords (cannot be used unquoted). From Cassandra's ReservedKeywords.
RESERVED_KEYWORDS = frozenset(
    [
        "add",
        "allow",
        "alter",
        "and",
        "apply",
        "asc",
        "authorize",
        "batch",
        "begin",
        "by",
        "columnfamily",
        "create",
        "default",
        "delete",
        "desc",
        "describe",
        "drop",
        "entries",
        "execute",
        "from",
        "full",
        "grant",
        "if",
        "in",
        "index",
        "infinity",
        "insert",
        "into",
        "is",
        "keyspace",
        "limit",
        "materialized",
        "mbean",
        "mbeans",
        "modify",
        "nan",
        "norecursive",
        "not",
        "null",
        "of",
        "on",
        "or",
        "order",
        "primary",
        "rename",
        "replace",
        "revoke",
        "schema",
        "select",
        "set",
        "table",
        "to",
        "token",
        "truncate",
        "unlogged",
        "unset",
        "update",
        "use",
        "using",
        "view",
        "where",
        "with",
    ]
)


def quote_identifier(name: str) -> str:
    """Quotes a CQL identifier the way Cassandra's ``ColumnIdentifier.maybeQuote`` does."""
    if _UNQUOTED.fullmatch(name) and name not in RESERVED_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------------------------
# Type-string parser


class TypeParseError(ValueError):
    """A CQL type string could not be parsed."""


_TOKEN = re.compile(
    r'\s*(?:(?P<q>"(?:[^"]|"")*")|(?P<s>\'(?:[^\']|\'\')*\')|(?P<w>[A-Za-z0-9_.$]+)|(?P<p>[<>,]))'
)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise TypeParseError(f"unexpected character {text[pos]!r} at {pos} in type {text!r}")
        out.append(m.group(m.lastgroup or "w"))
        pos = m.end()
    return out


def unquote_identifier(token: str) -> str:
    """``"Name"`` → ``Name`` (with ``""`` → ``"``); unquoted names are lower-cased like CQL does."""
    if token.startswith('"'):
        return token[1:-1].replace('""', '"')
    return token.lower()


def parse_type(
    text: str,
    user_types: Mapping[str, UserType] | None = None,
    keyspace: str = "",
) -> CqlType:
    """Parses a CQL type string such as ``map<text, frozen<list<int>>>``.

    Args:
        text: the type as CQL (or ``DESCRIBE``) prints it.
        user_types: UDTs of the keyspace, by name, to resolve references.
        keyspace: the keyspace the type belongs to (for error messages).

    Returns:
        The type. Types nested inside frozen types, tuples and collections are frozen,
        as CQL requires.

    Raises:
        TypeParseError: the string is not a type, or names an unknown UDT.
    """
    tokens = _tokens(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise TypeParseError(
                f"type {text!r} ends early" + (f", expected {expected!r}" if expected else "")
            )
        tok = tokens[pos]
        if expected is not None and tok != expected:
            raise TypeParseError(f"expected {expected!r} but found {tok!r} in type {text!r}")
        pos += 1
        return tok

    def parse(frozen_ctx: bool) -> CqlType:
        tok = take()
        low = tok.lower()
        if tok.startswith("'"):
            return _parse_marshal(tok[1:-1].replace("''", "'"), user_types, keyspace)
        if low == "frozen" and peek() == "<":
            take("<")
            inner = parse(True)
            take(">")
            return inner.freeze()
        if low in ("list", "set") and peek() == "<":
            take("<")
            elem = parse(True)
            take(">")
            return ListType(elem, frozen_ctx) if low == "list" else SetType(elem, frozen_ctx)
        if low == "map" and peek() == "<":
            take("<")
            key = parse(True)
            take(",")
            value = parse(True)
            take(">")
            return MapType(key, value, frozen_ctx)
        if low == "tuple" and peek() == "<":
            take("<")
            elems = [parse(True)]
            while peek() == ",":
                take(",")
                elems.append(parse(True))
            take(">")
            return TupleType(tuple(elems))
        if low == "vector" and peek() == "<":
            take("<")
            elem = parse(True)
            take(",")
            dim_tok = take()
            take(">")
            try:
                dim = int(dim_tok)
            except ValueError:
                raise TypeParseError(f"vector dimension {dim_tok!r} is not an integer in {text!r}") from None
            if dim <= 0:
                raise TypeParseError(f"vector dimension must be positive in {text!r}")
            return VectorType(elem, dim)
        if not tok.startswith('"') and (low in NATIVE_TYPES or low in _ALIASES):
            return native(low)
        name = unquote_identifier(tok)
        if "." in name and not tok.startswith('"'):
            name = name.split(".", 1)[1]
        if user_types is None or name not in user_types:
            raise TypeParseError(
                f"unknown type {tok!r} in {text!r}" + (f" (keyspace {keyspace})" if keyspace else "")
            )
        udt = user_types[name]
        return udt.freeze() if frozen_ctx else udt

    result = parse(False)
    if pos != len(tokens):
        raise TypeParseError(f"unexpected {tokens[pos]!r} after the type in {text!r}")
    return result


def _parse_marshal(cls: str, user_types: Mapping[str, UserType] | None, keyspace: str) -> CqlType:
    """Parses Cassandra's internal marshal form (``org.apache.cassandra.db.marshal.X(...)``)."""
    text = cls.strip()

    def split_args(s: str) -> list[str]:
        depth = 0
        out: list[str] = []
        cur = ""
        for ch in s:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            if ch == "," and depth == 0:
                out.append(cur.strip())
                cur = ""
            else:
                cur += ch
        if cur.strip():
            out.append(cur.strip())
        return out

    m = re.match(r"^(?:org\.apache\.cassandra\.db\.marshal\.)?(\w+)(?:\((.*)\))?$", text, re.S)
    if not m:
        raise TypeParseError(f"unsupported custom type {cls!r}")
    name, args = m.group(1), m.group(2)
    if name in MARSHAL_CLASSES:
        return NativeType(MARSHAL_CLASSES[name])
    parts = split_args(args) if args else []
    if name == "FrozenType" and len(parts) == 1:
        return _parse_marshal(parts[0], user_types, keyspace).freeze()
    if name == "ReversedType" and len(parts) == 1:
        return _parse_marshal(parts[0], user_types, keyspace)
    # Collection type parameters are always frozen (ListType.getInstance freezes them).
    if name == "ListType" and len(parts) == 1:
        return ListType(_parse_marshal(parts[0], user_types, keyspace).freeze())
    if name == "SetType" and len(parts) == 1:
        return SetType(_parse_marshal(parts[0], user_types, keyspace).freeze())
    if name == "MapType" and len(parts) == 2:
        return MapType(
            _parse_marshal(parts[0], user_types, keyspace).freeze(),
            _parse_marshal(parts[1], user_types, keyspace).freeze(),
        )
    if name == "TupleType":
        return TupleType(tuple(_parse_marshal(p, user_types, keyspace).freeze() for p in parts))
    if name == "VectorType" and len(parts) == 2:
        try:
            dim = int(parts[1])
        except ValueError:
            raise TypeParseError(f"vector dimension {parts[1]!r} is not an integer in {cls!r}") from None
        if dim <= 0:
            raise TypeParseError(f"vector dimension must be positive in {cls!r}")
        return VectorType(_parse_marshal(parts[0], user_types, keyspace).freeze(), dim)
    raise TypeParseError(f"unsupported custom type {cls!r}")
