"""``docs/destinations.md`` against the code: its type-mapping table must be what the mappings give.

Each row's PostgreSQL and ClickHouse types are recomputed with ``pg_type`` and ``mapping``,
and every CQL type a destination loads must have a row, so the page cannot drift from the
code. No database is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdc_platform.destinations.base import UnsupportedTableError, check_supported
from cdc_platform.destinations.clickhouse.client import Capabilities
from cdc_platform.destinations.clickhouse.typemap import TYPE_FLAGS, mapping
from cdc_platform.destinations.postgres.typemap import pg_type
from cdc_platform.schema.cql import parse_schema
from cdc_platform.schema.types import (
    NATIVE_TYPES,
    CqlType,
    ListType,
    MapType,
    NativeType,
    SetType,
    TupleType,
    UserType,
    VectorType,
    parse_type,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "destinations.md"
SECTION = "## Type mapping"
HEADER = ["CQL type", "PostgreSQL type", "ClickHouse type", "ClickHouse type on 18.16"]

# The two ClickHouse columns: every type capability (current servers, chdb), and Debian's
# 18.16 as the server tests detect it (named tuples, none of the other type capabilities).
CURRENT = Capabilities().override({flag: True for flag in TYPE_FLAGS})
OLDEST = Capabilities().override({"named_tuple": True})

# Native types without a row: ``empty`` is the type of set cells' (absent) values, never a
# column's; counter tables are refused by every destination (checked below).
NOT_LOADED = {"empty", "counter"}


@dataclass(frozen=True)
class Row:
    cql: str
    postgres: str
    clickhouse: str
    clickhouse_oldest: str
    line: int


def _section() -> tuple[int, list[str]]:
    """The type-mapping section: the line number of its heading, and its lines."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start + 1, lines[start:end]


def _code(cell: str, line: int) -> str:
    """The text of a Markdown code span filling a table cell (single or double backticks)."""
    m = re.fullmatch(r"(`+)(.+?)\1", cell.strip())
    if m is None:
        raise AssertionError(f"{DOC.name}:{line}: expected a code span, found {cell.strip()!r}")
    text = m.group(2)
    if len(text) > 2 and text.startswith(" ") and text.endswith(" "):
        text = text[1:-1]  # CommonMark strips one padding space on each side
    return text


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table() -> list[Row]:
    offset, lines = _section()
    head = next(i for i, line in enumerate(lines) if line.startswith("| CQL type"))
    assert _cells(lines[head]) == HEADER
    assert set(lines[head + 1].replace("|", "").strip()) <= {"-", ":", " "}
    rows = []
    for i in range(head + 2, len(lines)):
        if not lines[i].startswith("|"):
            break
        cells = _cells(lines[i])
        assert len(cells) == len(HEADER), f"{DOC.name}:{offset + i}: {len(cells)} cells"
        cql, postgres, clickhouse, oldest = (_code(c, offset + i) for c in cells)
        rows.append(Row(cql, postgres, clickhouse, oldest, offset + i))
    return rows


def _user_types() -> dict[str, UserType]:
    """The user types the rows use: the ``cql`` block of the section."""
    text = "\n".join(_section()[1])
    m = re.search(r"```cql\n(.*?)```", text, re.S)
    assert m is not None, f"{DOC.name}: the type-mapping section has no cql block of user types"
    return dict(parse_schema(m.group(1)).keyspaces["ks"].types)


def _parsed(rows: list[Row]) -> list[tuple[Row, CqlType]]:
    udts = _user_types()
    return [(row, parse_type(row.cql, udts, "ks")) for row in rows]


@pytest.fixture(scope="module")
def rows() -> list[tuple[Row, CqlType]]:
    return _parsed(_table())


def _format(cql: str, t: CqlType) -> str:
    """The row as it should read (backticks doubled around text holding a backtick)."""

    def code(s: str) -> str:
        return f"``{s}``" if "`" in s else f"`{s}`"

    cells = [cql, pg_type(t), mapping(t, CURRENT).ch.sql(), mapping(t, OLDEST).ch.sql()]
    return "| " + " | ".join(code(c) for c in cells) + " |"


def test_every_row_is_what_the_mappings_give(rows: list[tuple[Row, CqlType]]) -> None:
    wrong = [
        f"{DOC.name}:{row.line}: should read {_format(row.cql, t)}"
        for row, t in rows
        if (row.postgres, row.clickhouse, row.clickhouse_oldest)
        != (pg_type(t), mapping(t, CURRENT).ch.sql(), mapping(t, OLDEST).ch.sql())
    ]
    assert not wrong, "\n".join(wrong)


def test_rows_are_distinct(rows: list[tuple[Row, CqlType]]) -> None:
    names = [row.cql for row, _ in rows]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_every_loaded_native_type_has_a_row(rows: list[tuple[Row, CqlType]]) -> None:
    listed = {row.cql for row, t in rows if isinstance(t, NativeType)}
    missing = (NATIVE_TYPES | {"varchar"}) - NOT_LOADED - listed
    assert not missing, f"{DOC.name}: no row for {sorted(missing)}"
    assert not listed & NOT_LOADED


def test_every_kind_of_composite_type_has_a_row(rows: list[tuple[Row, CqlType]]) -> None:
    kinds = {
        (type(t).__name__, t.frozen)
        for _, t in rows
        if not isinstance(t, (NativeType, TupleType, VectorType))
    }
    for kind in (ListType, SetType, MapType, UserType):
        assert {(kind.__name__, False), (kind.__name__, True)} <= kinds, kind.__name__
    assert any(isinstance(t, TupleType) for _, t in rows)
    assert any(isinstance(t, VectorType) for _, t in rows)
    # Collections nested in collections, of tuples and of UDTs (JSON on 18.16).
    assert any(isinstance(t, ListType) and isinstance(t.element, ListType) for _, t in rows)
    assert any(isinstance(t, ListType) and isinstance(t.element, TupleType) for _, t in rows)
    assert any(isinstance(t, ListType) and isinstance(t.element, UserType) for _, t in rows)


def test_counter_tables_are_refused_so_counter_has_no_row() -> None:
    table = parse_schema(
        "CREATE TABLE ks.hits (page text PRIMARY KEY, n counter) WITH ID = 00000000-0000-1000-8000-000000000401;"
    ).table("ks.hits")
    with pytest.raises(UnsupportedTableError, match="counter tables are not loaded"):
        check_supported("postgres", table)
