"""Keyspaces, tables, columns and dropped columns, as the decoder needs them."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cdc_platform.schema.types import CqlType, NativeType, UserType, quote_identifier


class ColumnKind(enum.Enum):
    PARTITION_KEY = "partition_key"
    CLUSTERING = "clustering"
    REGULAR = "regular"
    STATIC = "static"


@dataclass(frozen=True)
class Column:
    """A column of a table.

    Attributes:
        name: the column name as stored (case-sensitive, unquoted).
        type: its CQL type.
        kind: partition key, clustering, regular or static.
        position: index among the partition-key or clustering columns (0 otherwise).
        reversed: clustering column declared ``DESC``.
    """

    name: str
    type: CqlType
    kind: ColumnKind
    position: int = 0
    reversed: bool = False

    @cached_property
    def name_bytes(self) -> bytes:
        return self.name.encode("utf-8")

    @cached_property
    def decode(self) -> Callable[[bytes], Any]:
        """Decoder of this column's serialized values (see :mod:`cdc_platform.schema.values`)."""
        from cdc_platform.schema.values import decoder

        return decoder(self.type)

    @cached_property
    def encode(self) -> Callable[[Any], bytes]:
        """Encoder of this column's Python values (see :mod:`cdc_platform.schema.values`)."""
        from cdc_platform.schema.values import encoder

        return encoder(self.type)

    @cached_property
    def is_counter(self) -> bool:
        return isinstance(self.type, NativeType) and self.type.name == "counter"

    @property
    def is_primary_key(self) -> bool:
        return self.kind in (ColumnKind.PARTITION_KEY, ColumnKind.CLUSTERING)

    @property
    def is_static(self) -> bool:
        return self.kind is ColumnKind.STATIC

    @property
    def is_complex(self) -> bool:
        return self.type.is_multicell


@dataclass(frozen=True)
class DroppedColumn:
    """A column dropped with ``ALTER TABLE ... DROP``.

    Attributes:
        name: the dropped column's name.
        type: its type at the time it was dropped (UDTs are recorded as tuples by Cassandra).
        dropped_time: microseconds since the epoch; cells written at or before it are discarded.
        kind: regular or static.
        type_known: False when the schema gave only the drop time (3.x snapshots); cells of
            such a column cannot be decoded.
    """

    name: str
    type: CqlType
    dropped_time: int
    kind: ColumnKind = ColumnKind.REGULAR
    type_known: bool = True

    @cached_property
    def name_bytes(self) -> bytes:
        return self.name.encode("utf-8")

    def as_column(self) -> Column:
        return Column(self.name, self.type, self.kind)


@dataclass
class Table:
    """A table: its id (what commit log entries carry), columns and dropped columns."""

    keyspace: str
    name: str
    id: uuid.UUID
    columns: list[Column]
    dropped: dict[str, DroppedColumn] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)  # option → CQL literal text, as printed

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"table {self.qualified_name} declares columns twice: {dupes}")
        if not self.partition_key:
            raise ValueError(f"table {self.qualified_name} has no partition key")

    @property
    def qualified_name(self) -> str:
        return f"{self.keyspace}.{self.name}"

    @property
    def cql_name(self) -> str:
        return f"{quote_identifier(self.keyspace)}.{quote_identifier(self.name)}"

    @cached_property
    def partition_key(self) -> list[Column]:
        return sorted(
            (c for c in self.columns if c.kind is ColumnKind.PARTITION_KEY), key=lambda c: c.position
        )

    @cached_property
    def clustering(self) -> list[Column]:
        return sorted((c for c in self.columns if c.kind is ColumnKind.CLUSTERING), key=lambda c: c.position)

    @cached_property
    def regular(self) -> list[Column]:
        return [c for c in self.columns if c.kind is ColumnKind.REGULAR]

    @cached_property
    def static(self) -> list[Column]:
        return [c for c in self.columns if c.kind is ColumnKind.STATIC]

    @cached_property
    def by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    @cached_property
    def by_name_bytes(self) -> dict[bytes, Column]:
        return {c.name_bytes: c for c in self.columns if not c.is_primary_key}

    @cached_property
    def dropped_by_name_bytes(self) -> dict[bytes, DroppedColumn]:
        return {d.name_bytes: d for d in self.dropped.values()}

    def option(self, name: str, default: str | None = None) -> str | None:
        """An option's value (string literals unquoted), e.g. ``table.option("comment")``."""
        literal = self.options.get(name)
        if literal is None:
            return default
        if len(literal) >= 2 and literal[0] == literal[-1] == "'":
            return literal[1:-1].replace("''", "'")
        return literal

    @property
    def cdc(self) -> bool:
        return self.options.get("cdc", "false").lower() == "true"

    def column(self, name: str) -> Column:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"table {self.qualified_name} has no column {name!r}") from None


@dataclass
class Keyspace:
    name: str
    replication: dict[str, str] = field(default_factory=dict)
    durable_writes: bool = True
    types: dict[str, UserType] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)


@dataclass
class Schema:
    """All keyspaces known to the decoder; tables are found by id."""

    keyspaces: dict[str, Keyspace] = field(default_factory=dict)

    @property
    def tables(self) -> Iterator[Table]:
        for ks in self.keyspaces.values():
            yield from ks.tables.values()

    @property
    def tables_by_id(self) -> dict[uuid.UUID, Table]:
        return {t.id: t for t in self.tables}

    def table(self, qualified: str) -> Table:
        """Finds ``keyspace.table`` (names as stored, case-sensitive)."""
        ks_name, _, t_name = qualified.partition(".")
        try:
            return self.keyspaces[ks_name].tables[t_name]
        except KeyError:
            raise KeyError(f"no table {qualified!r} in the schema") from None

    def add_table(self, table: Table) -> None:
        ks = self.keyspaces.setdefault(table.keyspace, Keyspace(table.keyspace))
        ks.tables[table.name] = table

    def select(self, qualified_names: Iterable[str] | None) -> set[uuid.UUID]:
        """Ids of the named tables (all tables when ``None``)."""
        if qualified_names is None:
            return {t.id for t in self.tables}
        return {self.table(q).id for q in qualified_names}
