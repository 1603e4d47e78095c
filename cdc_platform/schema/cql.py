"""Parser and printer for the schema CQL of ``DESCRIBE KEYSPACE <ks> WITH INTERNALS``.

Accepted statements: ``CREATE KEYSPACE``, ``CREATE TYPE``, ``CREATE TABLE … WITH ID = …``,
``ALTER TABLE … DROP <col> USING TIMESTAMP <µs>`` and ``ALTER TABLE … ADD <col> <type>``
(the lines DESCRIBE prints for dropped and re-added columns), and ``USE``. Indexes,
materialized views, functions, aggregates and triggers are skipped. Names may be quoted
and case-sensitive; column definitions separated only by a newline (CASSANDRA-19747) are
accepted.

How DESCRIBE encodes dropped columns: the column list of ``CREATE TABLE`` contains every
dropped column with the type it had when dropped; the ``ALTER … DROP`` line gives the drop
time; an ``ALTER … ADD`` line after it means the column exists again (with that type).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cdc_platform.schema.model import Column, ColumnKind, DroppedColumn, Keyspace, Schema, Table
from cdc_platform.schema.types import (
    CqlType,
    NativeType,
    TypeParseError,
    UserType,
    parse_type,
    quote_identifier,
)


class SchemaParseError(ValueError):
    """The schema text cannot be parsed; the message names the line."""

    def __init__(self, message: str, line: int | None = None, source: str | None = None) -> None:
        where = []
        if source:
            where.append(source)
        if line is not None:
            where.append(f"line {line}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.line = line


@dataclass(frozen=True)
class _Tok:
    kind: str  # ident, qident, string, number, uuid, blob, punct, dollar
    text: str
    line: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "ident" else ""


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<dollar>\$\$.*?\$\$)
  | (?P<string>'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")*")
  | (?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)
  | (?P<blob>0[xX][0-9a-fA-F]*)
  | (?P<number>-?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|NaN|Infinity))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(){}<>,;:.=\[\]+*?-])
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokenize(text: str, source: str | None) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    line = 1
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise SchemaParseError(f"unexpected character {text[pos]!r}", line, source)
        kind = m.lastgroup or ""
        chunk = m.group(0)
        if kind not in ("ws", "comment"):
            tokens.append(_Tok(kind, chunk, line))
        line += chunk.count("\n")
        pos = m.end()
    return tokens


@dataclass
class _TableDraft:
    keyspace: str
    name: str
    line: int
    columns: list[tuple[str, str, bool, int]] = field(default_factory=list)  # name, type text, static, line
    partition_key: list[str] = field(default_factory=list)
    clustering: list[str] = field(default_factory=list)
    order: dict[str, str] = field(default_factory=dict)
    table_id: uuid.UUID | None = None
    options: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # name → µs
    readded: dict[str, tuple[str, bool, int]] = field(default_factory=dict)  # name → (type, static, line)
    compact: bool = False


class _Parser:
    def __init__(self, text: str, source: str | None) -> None:
        self.source = source
        self.toks = _tokenize(text, source)
        self.pos = 0
        self.keyspaces: dict[str, Keyspace] = {}
        self.tables: list[_TableDraft] = []
        self.current_keyspace: str | None = None
        self.last_line = 0

    # -- token helpers ---------------------------------------------------------------------

    def error(self, message: str, tok: _Tok | None = None) -> SchemaParseError:
        tok = tok or (
            self.toks[self.pos] if self.pos < len(self.toks) else (self.toks[-1] if self.toks else None)
        )
        return SchemaParseError(message, tok.line if tok else None, self.source)

    def peek(self, offset: int = 0) -> _Tok | None:
        i = self.pos + offset
        return self.toks[i] if i < len(self.toks) else None

    def next(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end of the schema text")
        self.pos += 1
        return tok

    def at_word(self, *words: str) -> bool:
        for i, w in enumerate(words):
            tok = self.peek(i)
            if tok is None or tok.upper != w:
                return False
        return True

    def expect_word(self, *words: str) -> None:
        for w in words:
            tok = self.next()
            if tok.upper != w:
                raise self.error(f"expected {w} but found {tok.text!r}", tok)

    def expect(self, text: str) -> _Tok:
        tok = self.next()
        if tok.text != text:
            raise self.error(f"expected {text!r} but found {tok.text!r}", tok)
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.text == text:
            self.pos += 1
            return True
        return False

    def identifier(self) -> str:
        tok = self.next()
        if tok.kind == "qident":
            return tok.text[1:-1].replace('""', '"')
        if tok.kind == "ident":
            return tok.text.lower()
        raise self.error(f"expected a name but found {tok.text!r}", tok)

    def qualified(self) -> tuple[str, str]:
        first = self.identifier()
        if self.accept("."):
            return first, self.identifier()
        if self.current_keyspace is None:
            raise self.error(f"{first!r} is not qualified with a keyspace and no USE statement came before")
        return self.current_keyspace, first

    def skip_statement(self) -> None:
        depth = 0
        while True:
            tok = self.next()
            if tok.kind == "punct" and tok.text in "({[":
                depth += 1
            elif tok.kind == "punct" and tok.text in ")}]":
                depth -= 1
            elif tok.kind == "punct" and tok.text == ";" and depth <= 0:
                return

    def type_text(self, stop: set[str]) -> str:
        """Collects the tokens of a type up to a stop word/punctuation at depth 0.

        Stop words (``STATIC``, ``PRIMARY``, ``MASKED``, ``CHECK``) end the type only on the
        type's own line: on a new line they are the name of the next column (DESCRIBE prints
        one column per line, sometimes without the comma, CASSANDRA-19747).
        """
        toks: list[_Tok] = []
        depth = 0
        while True:
            tok = self.peek()
            if tok is None:
                raise self.error("unexpected end inside a type")
            if depth == 0 and tok.kind == "punct" and tok.text in stop:
                break
            if depth == 0 and toks:
                if tok.kind == "ident" and tok.upper in stop and tok.line == toks[-1].line:
                    break
                if tok.kind in ("ident", "qident") and toks[-1].text not in ("<", ",", "."):
                    break  # the next column definition starts (a missing comma)
            if tok.text == "<":
                depth += 1
            elif tok.text == ">":
                depth -= 1
            toks.append(tok)
            self.pos += 1
        self.last_line = toks[-1].line if toks else (self.peek() or _Tok("", "", 0)).line
        out = ""
        for tok in toks:
            if tok.text == ",":
                out += ", "
            elif tok.text in ("<", ">", "."):
                out += tok.text
            else:
                out += tok.text
        return out

    def at_clause(self, word: str) -> bool:
        """``word`` starts a clause of the current column (same line as its type)."""
        tok = self.peek()
        return tok is not None and tok.upper == word and tok.line == self.last_line

    def value(self) -> str:
        """A literal option value, returned as text (maps keep their CQL form)."""
        tok = self.next()
        if tok.kind == "punct" and tok.text == "{":
            depth = 1
            parts = ["{"]
            while depth:
                t = self.next()
                if t.text == "{":
                    depth += 1
                elif t.text == "}":
                    depth -= 1
                parts.append(t.text)
            return " ".join(parts)
        if tok.kind == "string":
            return tok.text[1:-1].replace("''", "'")
        return tok.text

    def literal(self) -> str:
        """A literal (option value) as CQL source text: strings keep their quotes, maps their form."""
        tok = self.next()
        if tok.kind == "punct" and tok.text == "{":
            items: list[str] = []
            if self.accept("}"):
                return "{}"
            while True:
                k = self.literal()
                self.expect(":")
                items.append(f"{k}: {self.literal()}")
                if self.accept("}"):
                    return "{" + ", ".join(items) + "}"
                self.expect(",")
        if tok.kind == "punct" and tok.text == "-":
            return "-" + self.next().text
        return tok.text

    # -- statements ------------------------------------------------------------------------

    def parse(self) -> None:
        while self.peek() is not None:
            if self.accept(";"):
                continue
            if self.at_word("CREATE", "KEYSPACE"):
                self.create_keyspace()
            elif self.at_word("CREATE", "TYPE"):
                self.create_type()
            elif self.at_word("CREATE", "TABLE") or self.at_word("CREATE", "COLUMNFAMILY"):
                self.create_table()
            elif self.at_word("ALTER", "TABLE"):
                self.alter_table()
            elif self.at_word("USE"):
                self.next()
                self.current_keyspace = self.identifier()
                self.expect(";")
            elif self.at_word("CREATE"):
                self.skip_statement()  # index, view, function, aggregate, trigger
            else:
                tok = self.next()
                raise self.error(f"unexpected {tok.text!r}: expected CREATE, ALTER or USE", tok)

    def if_not_exists(self) -> None:
        if self.at_word("IF", "NOT", "EXISTS"):
            self.pos += 3

    def create_keyspace(self) -> None:
        self.expect_word("CREATE", "KEYSPACE")
        self.if_not_exists()
        name = self.identifier()
        ks = self.keyspaces.setdefault(name, Keyspace(name))
        self.expect_word("WITH")
        while True:
            key = self.identifier()
            self.expect("=")
            if key == "replication":
                ks.replication = self.map_literal()
            elif key == "durable_writes":
                ks.durable_writes = self.value().lower() == "true"
            else:
                self.value()
            if not self.at_word("AND"):
                break
            self.next()
        self.expect(";")
        self.current_keyspace = self.current_keyspace or name

    def map_literal(self) -> dict[str, str]:
        self.expect("{")
        out: dict[str, str] = {}
        if self.accept("}"):
            return out
        while True:
            k = self.value()
            self.expect(":")
            out[k] = self.value()
            if self.accept("}"):
                return out
            self.expect(",")

    def keyspace(self, name: str) -> Keyspace:
        ks = self.keyspaces.get(name)
        if ks is None:
            ks = self.keyspaces[name] = Keyspace(name)
        return ks

    def create_type(self) -> None:
        start = self.next()
        self.expect_word("TYPE")
        self.if_not_exists()
        ks_name, name = self.qualified()
        ks = self.keyspace(ks_name)
        self.expect("(")
        names: list[str] = []
        types: list[CqlType] = []
        while True:
            fname = self.identifier()
            ttext = self.type_text({",", ")"})
            try:
                types.append(parse_type(ttext, ks.types, ks_name).freeze())
            except TypeParseError as exc:
                raise self.error(str(exc), start) from None
            names.append(fname)
            if self.accept(")"):
                break
            self.expect(",")
        self.expect(";")
        ks.types[name] = UserType(ks_name, name, tuple(names), tuple(types))

    def create_table(self) -> None:
        start = self.next()
        self.next()  # TABLE
        self.if_not_exists()
        ks_name, name = self.qualified()
        draft = _TableDraft(ks_name, name, start.line)
        self.expect("(")
        while True:
            if self.at_word("PRIMARY", "KEY"):
                self.pos += 2
                self.primary_key(draft)
            else:
                col_tok = self.peek()
                cname = self.identifier()
                ttext = self.type_text({",", ")", "STATIC", "PRIMARY", "MASKED", "CHECK"})
                static = False
                if self.at_clause("STATIC"):
                    self.next()
                    static = True
                if self.at_clause("PRIMARY") and self.at_word("PRIMARY", "KEY"):
                    self.pos += 2
                    draft.partition_key = [cname]
                self.skip_column_extras()
                draft.columns.append((cname, ttext, static, col_tok.line if col_tok else start.line))
            if self.accept(")"):
                break
            if not self.accept(","):
                tok = self.peek()
                if tok is None or tok.kind not in ("ident", "qident"):
                    raise self.error("expected ',' or ')' in the column list", tok)
        if self.at_word("WITH"):
            self.next()
            self.table_options(draft)
        self.expect(";")
        self.keyspace(ks_name)
        self.tables.append(draft)

    def skip_column_extras(self) -> None:
        # 5.0 ``MASKED WITH fn(args)`` and trunk ``CHECK …`` do not matter for decoding.
        while self.at_clause("MASKED") or self.at_clause("CHECK"):
            depth = 0
            while True:
                tok = self.peek()
                if tok is None:
                    return
                if depth == 0 and tok.text in (",", ")"):
                    return
                if tok.text == "(":
                    depth += 1
                elif tok.text == ")":
                    depth -= 1
                self.pos += 1

    def primary_key(self, draft: _TableDraft) -> None:
        self.expect("(")
        if self.accept("("):
            parts = [self.identifier()]
            while self.accept(","):
                parts.append(self.identifier())
            self.expect(")")
            draft.partition_key = parts
        else:
            draft.partition_key = [self.identifier()]
        while self.accept(","):
            draft.clustering.append(self.identifier())
        self.expect(")")

    def table_options(self, draft: _TableDraft) -> None:
        while True:
            if self.at_word("ID"):
                self.next()
                self.expect("=")
                tok = self.next()
                text = tok.text.strip("'")
                try:
                    draft.table_id = uuid.UUID(text)
                except ValueError:
                    raise self.error(f"table id {tok.text!r} is not a UUID", tok) from None
            elif self.at_word("CLUSTERING", "ORDER", "BY"):
                self.pos += 3
                self.expect("(")
                while True:
                    cname = self.identifier()
                    direction = self.next().text.upper()
                    if direction not in ("ASC", "DESC"):
                        raise self.error(f"clustering order must be ASC or DESC, not {direction!r}")
                    draft.order[cname] = direction
                    if self.accept(")"):
                        break
                    self.expect(",")
            elif self.at_word("COMPACT", "STORAGE"):
                self.pos += 2
                draft.compact = True
            else:
                key = self.identifier()
                self.expect("=")
                draft.options[key] = self.literal()
            if not self.at_word("AND"):
                return
            self.next()

    def alter_table(self) -> None:
        start = self.next()
        self.next()  # TABLE
        ks_name, name = self.qualified()
        draft = next((t for t in reversed(self.tables) if t.keyspace == ks_name and t.name == name), None)
        if draft is None:
            raise self.error(f"ALTER TABLE {ks_name}.{name} comes before its CREATE TABLE", start)
        if self.at_word("DROP"):
            self.next()
            cname = self.identifier()
            if not self.at_word("USING", "TIMESTAMP"):
                raise self.error(
                    f"ALTER TABLE … DROP {cname} has no USING TIMESTAMP: the drop time is needed to "
                    "discard the column's old cells (use DESCRIBE … WITH INTERNALS)",
                    start,
                )
            self.pos += 2
            tok = self.next()
            try:
                draft.dropped[cname] = int(tok.text)
            except ValueError:
                raise self.error(f"drop timestamp {tok.text!r} is not an integer", tok) from None
            draft.readded.pop(cname, None)
        elif self.at_word("ADD"):
            self.next()
            cname = self.identifier()
            ttext = self.type_text({";", "STATIC", "MASKED", "CHECK"})
            static = False
            if self.at_clause("STATIC"):
                self.next()
                static = True
            self.skip_column_extras()
            draft.readded[cname] = (ttext, static, start.line)
        else:
            self.skip_statement()
            return
        self.expect(";")

    # -- building the model ----------------------------------------------------------------

    def build(self) -> Schema:
        schema = Schema(self.keyspaces)
        seen_ids: dict[uuid.UUID, str] = {}
        for d in self.tables:
            table = self.build_table(d)
            other = seen_ids.get(table.id)
            if other is not None:
                raise SchemaParseError(
                    f"tables {other} and {table.qualified_name} share id {table.id}", d.line, self.source
                )
            seen_ids[table.id] = table.qualified_name
            schema.add_table(table)
        return schema

    def build_table(self, d: _TableDraft) -> Table:
        ks = self.keyspace(d.keyspace)
        qualified = f"{d.keyspace}.{d.name}"
        if d.compact:
            raise SchemaParseError(
                f"{qualified} uses COMPACT STORAGE, whose commit log layout this decoder does not support "
                "(Cassandra 4.0+ requires DROP COMPACT STORAGE first)",
                d.line,
                self.source,
            )
        if d.table_id is None:
            raise SchemaParseError(
                f"CREATE TABLE {qualified} has no 'WITH ID = …': commit log entries name tables by id; "
                "print the schema with DESCRIBE KEYSPACE … WITH INTERNALS or cdc-platform schema pull",
                d.line,
                self.source,
            )

        def typed(text: str, line: int) -> CqlType:
            try:
                return parse_type(text, ks.types, d.keyspace)
            except TypeParseError as exc:
                raise SchemaParseError(f"{qualified}: {exc}", line, self.source) from None

        listed = {c[0]: c for c in d.columns}
        if len(listed) != len(d.columns):
            raise SchemaParseError(f"{qualified} lists a column twice", d.line, self.source)
        if not d.partition_key:
            raise SchemaParseError(f"{qualified} has no PRIMARY KEY", d.line, self.source)
        columns: list[Column] = []
        for i, pk in enumerate(d.partition_key):
            if pk not in listed:
                raise SchemaParseError(
                    f"{qualified}: primary key column {pk!r} is not declared", d.line, self.source
                )
            columns.append(Column(pk, typed(listed[pk][1], listed[pk][3]), ColumnKind.PARTITION_KEY, i))
        for i, ck in enumerate(d.clustering):
            if ck not in listed:
                raise SchemaParseError(
                    f"{qualified}: clustering column {ck!r} is not declared", d.line, self.source
                )
            columns.append(
                Column(
                    ck,
                    typed(listed[ck][1], listed[ck][3]),
                    ColumnKind.CLUSTERING,
                    i,
                    d.order.get(ck) == "DESC",
                )
            )
        unknown_order = set(d.order) - set(d.clustering)
        if unknown_order:
            raise SchemaParseError(
                f"{qualified}: CLUSTERING ORDER names non-clustering columns {sorted(unknown_order)}",
                d.line,
                self.source,
            )
        keys = set(d.partition_key) | set(d.clustering)
        dropped: dict[str, DroppedColumn] = {}
        for cname, ttext, static, line in d.columns:
            if cname in keys:
                continue
            kind = ColumnKind.STATIC if static else ColumnKind.REGULAR
            if cname in d.dropped:
                dropped[cname] = DroppedColumn(cname, typed(ttext, line), d.dropped[cname], kind)
            else:
                columns.append(Column(cname, typed(ttext, line), kind))
        for cname, micros in d.dropped.items():
            if cname not in dropped:
                # 3.x snapshot style: the dropped type is not printed; cells of it cannot be decoded.
                dropped[cname] = DroppedColumn(
                    cname, NativeType("blob"), micros, ColumnKind.REGULAR, type_known=False
                )
        for cname, (ttext, static, line) in d.readded.items():
            if cname in (c.name for c in columns):
                raise SchemaParseError(
                    f"{qualified}: ALTER … ADD {cname} but the column exists", line, self.source
                )
            columns.append(
                Column(cname, typed(ttext, line), ColumnKind.STATIC if static else ColumnKind.REGULAR)
            )
        try:
            return Table(d.keyspace, d.name, d.table_id, columns, dropped, dict(d.options))
        except ValueError as exc:
            raise SchemaParseError(str(exc), d.line, self.source) from None


def parse_schema(text: str, source: str | None = None) -> Schema:
    """Parses schema CQL (``DESCRIBE KEYSPACE … WITH INTERNALS`` output) into a :class:`Schema`.

    Raises:
        SchemaParseError: naming the line, for syntax errors, unknown types, missing table
            ids or inconsistent definitions.
    """
    parser = _Parser(text, source)
    parser.parse()
    return parser.build()


def load_schema(path: str | Path) -> Schema:
    """Reads and parses a schema file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaParseError(f"cannot read schema file: {exc.strerror}", source=str(p)) from None
    return parse_schema(text, str(p))


# --------------------------------------------------------------------------------------------
# Printer


def _sorted_columns(columns: list[Column]) -> list[Column]:
    # Cassandra's column order: simple before complex, then by name bytes.
    return sorted(columns, key=lambda c: (c.type.is_multicell, c.name_bytes))


def quote_string(value: str) -> str:
    """A CQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def unquote_literal(literal: str) -> str:
    """The text of a CQL string literal (other literals are returned unchanged)."""
    if len(literal) >= 2 and literal[0] == literal[-1] == "'":
        return literal[1:-1].replace("''", "'")
    return literal


def _udt_order(types: dict[str, UserType]) -> list[UserType]:
    done: list[UserType] = []
    seen: set[str] = set()

    def visit(t: UserType) -> None:
        if t.name in seen:
            return
        seen.add(t.name)
        for sub in _nested_udts(t):
            if sub.name in types:
                visit(types[sub.name])
        done.append(t)

    for name in sorted(types):
        visit(types[name])
    return done


def _nested_udts(t: CqlType) -> list[UserType]:
    out: list[UserType] = []
    for s in t.subtypes():
        if isinstance(s, UserType):
            out.append(s)
        out.extend(_nested_udts(s))
    return out


def table_to_cql(table: Table) -> str:
    """``CREATE TABLE … WITH ID`` plus the ``ALTER`` lines for dropped columns, as DESCRIBE prints them."""
    qn = table.cql_name
    lines: list[str] = []
    single_pk = len(table.partition_key) == 1 and not table.clustering
    for c in table.partition_key + table.clustering:
        suffix = " PRIMARY KEY" if single_pk else ""
        lines.append(f"    {quote_identifier(c.name)} {c.type.cql()}{suffix}")
    live = [c for c in table.columns if not c.is_primary_key and c.name not in table.dropped]
    for c in _sorted_columns([c for c in live if c.is_static]) + _sorted_columns(
        [c for c in live if not c.is_static]
    ):
        lines.append(f"    {quote_identifier(c.name)} {c.type.cql()}{' static' if c.is_static else ''}")
    for d in table.dropped.values():
        if d.type_known:  # 3.x snapshots record no type for a dropped column: print only its DROP line
            lines.append(
                f"    {quote_identifier(d.name)} {d.type.cql()}{' static' if d.kind is ColumnKind.STATIC else ''}"
            )
    if not single_pk:
        pk = ", ".join(quote_identifier(c.name) for c in table.partition_key)
        if len(table.partition_key) > 1:
            pk = f"({pk})"
        parts = [pk] + [quote_identifier(c.name) for c in table.clustering]
        lines.append(f"    PRIMARY KEY ({', '.join(parts)})")
    out = [f"CREATE TABLE {qn} (", ",\n".join(lines), f") WITH ID = {table.id}"]
    if table.clustering:
        order = ", ".join(
            f"{quote_identifier(c.name)} {'DESC' if c.reversed else 'ASC'}" for c in table.clustering
        )
        out.append(f"    AND CLUSTERING ORDER BY ({order})")
    for key, literal in sorted(table.options.items()):
        out.append(f"    AND {key} = {literal}")
    text = "\n".join(out) + ";"
    current = {c.name: c for c in table.columns}
    for d in table.dropped.values():
        text += f"\nALTER TABLE {qn} DROP {quote_identifier(d.name)} USING TIMESTAMP {d.dropped_time};"
        if d.name in current:
            c = current[d.name]
            text += f"\nALTER TABLE {qn} ADD {quote_identifier(c.name)} {c.type.cql()}{' static' if c.is_static else ''};"
    return text


def schema_to_cql(schema: Schema) -> str:
    """Prints a schema in the ``DESCRIBE KEYSPACE … WITH INTERNALS`` layout (parseable by :func:`parse_schema`)."""
    chunks: list[str] = []
    for ks in schema.keyspaces.values():
        repl = ", ".join(f"{quote_string(k)}: {quote_string(v)}" for k, v in ks.replication.items())
        chunks.append(
            f"CREATE KEYSPACE {quote_identifier(ks.name)} WITH replication = {{{repl}}}  "
            f"AND durable_writes = {'true' if ks.durable_writes else 'false'};"
        )
        for t in _udt_order(ks.types):
            fields = ",\n".join(
                f"    {quote_identifier(n)} {ft.cql()}"
                for n, ft in zip(t.field_names, t.field_types, strict=True)
            )
            chunks.append(
                f"CREATE TYPE {quote_identifier(ks.name)}.{quote_identifier(t.name)} (\n{fields}\n);"
            )
        for table in sorted(ks.tables.values(), key=lambda t: t.name.lower()):
            chunks.append(table_to_cql(table))
    return "\n\n".join(chunks) + "\n"
