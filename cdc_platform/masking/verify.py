"""Scanning destinations for values that look like unmasked PII (``cdc-platform masking verify``).

Two kinds of findings:

- **format**: a value of a masked column (or column path) that its rule would not have
  produced: an ``hmac_sha256`` column value that is not ``h1:<known key id>:<64 hex>``, a
  ``partial`` value with unmasked characters, a generalized date not on the 1st, an address
  with host bits, a redacted value that is neither null nor the fixed text, …
- **seed**: a known plaintext (``seeds``, e.g. the workload's generated PII) anywhere in a
  text, JSON, text-array or bytea column of any table of the captured keyspaces, or of the
  quarantine.

Where it looks:

- PostgreSQL (``postgres_url``): every table of the schemas ``<prefix><keyspace>``; the
  current-state tables (``t``, ``t$static``, ``t$partitions``) are checked by value column
  (:mod:`cdc_platform.destinations.naming`), change histories (``t$history``, TimescaleDB
  destination) by their ``_cdc_values`` cells.
- the quarantine (``quarantine_url``): ``cdc_meta.quarantine``, its ``row_json`` column (a
  change as ``segment decode`` prints it, or an object column → value) checked against the
  rules of the table it names, every text column for seeds.
- ClickHouse (``clickhouse_url``, a server or chdb): the same tables and columns, through the
  ClickHouse destination's client; every stored row version is read.

Every engine is read through a :class:`DestinationReader` (``tables``, ``columns``, ``rows``,
``close``); ``readers=[…]`` adds others.

A finding names the location, table, column and reason, with a count and fingerprints of a
few offending values (``sha256:<12 hex>/<length>``): never the value itself.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cdc_platform.masking.algorithms import INTEGER_RANGES, days_from_civil, native_name
from cdc_platform.masking.paths import Step
from cdc_platform.masking.policy import MaskingPolicy, Rule
from cdc_platform.schema.model import Column, Schema, Table
from cdc_platform.schema.render import json_name
from cdc_platform.schema.types import CqlType, ListType, MapType, SetType, TupleType, UserType, VectorType

QUARANTINE_SCHEMA = "cdc_meta"
QUARANTINE_TABLE = "quarantine"
SAMPLES = 3

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DATE = re.compile(r"^([+-]?\d{4,})-(\d{2})-(\d{2})$")
_TIMESTAMP = re.compile(
    r"^([+-]?\d{4,})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)


class VerifyError(RuntimeError):
    """A destination cannot be scanned (no reader for it, connection refused)."""


# --------------------------------------------------------------------------------------------
# Report


def fingerprint(value: Any) -> str:
    """``sha256:<12 hex>/<length>`` of a value: identifies it without showing it."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
    else:
        raw = repr(value).encode("utf-8")
    return f"sha256:{hashlib.sha256(raw).hexdigest()[:12]}/{len(raw)}"


@dataclass
class Finding:
    """Values of one column that look unmasked, for one reason.

    Attributes:
        location: ``postgres``, ``quarantine``, ``clickhouse`` …
        table: the destination table (``schema.table``).
        column: the destination column, with the rule path when it is a part of it
            (``shipping -> shipping.street``).
        reason: why the values look unmasked.
        count: how many values.
        samples: fingerprints of the first few (never the values).
    """

    location: str
    table: str
    column: str
    reason: str
    count: int = 0
    samples: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.location} {self.table} {self.column}: {self.reason} "
            f"({self.count} value{'s' if self.count != 1 else ''}; {', '.join(self.samples)})"
        )


@dataclass
class VerifyReport:
    """Findings, rows scanned per table and notes (tables missing, locations not scanned)."""

    findings: list[Finding] = field(default_factory=list)
    scanned: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _index: dict[tuple[str, str, str, str], Finding] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, location: str, table: str, column: str, reason: str, value: Any) -> None:
        key = (location, table, column, reason)
        finding = self._index.get(key)
        if finding is None:
            finding = self._index[key] = Finding(location, table, column, reason)
            self.findings.append(finding)
        finding.count += 1
        if len(finding.samples) < SAMPLES:
            finding.samples.append(fingerprint(value))

    def render(self) -> str:
        lines = [str(f) for f in self.findings]
        lines += [f"note: {n}" for n in self.notes]
        rows = sum(self.scanned.values())
        lines.append(
            f"{len(self.findings)} finding{'s' if len(self.findings) != 1 else ''} "
            f"in {rows} rows of {len(self.scanned)} tables"
        )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "findings": [
                {
                    "location": f.location,
                    "table": f.table,
                    "column": f.column,
                    "reason": f.reason,
                    "count": f.count,
                    "samples": f.samples,
                }
                for f in self.findings
            ],
            "scanned": dict(self.scanned),
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------------------------
# Readers


class DestinationReader(Protocol):
    """What verification needs from a destination engine.

    Column kinds: ``text`` (str values), ``json`` (parsed JSON), ``array`` (lists),
    ``bytes``, ``other`` (dates, numbers, addresses … as Python values).
    """

    location: str

    def tables(self, namespace: str) -> list[str]:
        """Base tables of a schema (PostgreSQL) or database (ClickHouse); ``[]`` if it does not exist."""
        ...

    def columns(self, namespace: str, table: str) -> dict[str, str]:
        """Column name → kind."""
        ...

    def rows(self, namespace: str, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """All rows, those columns only, streamed."""
        ...

    def close(self) -> None: ...


class PostgresReader:
    """:class:`DestinationReader` over psycopg, streaming with a server-side cursor."""

    def __init__(self, url: str, location: str = "postgres", *, batch_rows: int = 2000) -> None:
        import psycopg

        self.location = location
        self.batch_rows = batch_rows
        try:
            self._conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as exc:
            raise VerifyError(f"{location}: cannot connect ({type(exc).__name__})") from None
        self._conn.read_only = True

    def __repr__(self) -> str:
        return f"PostgresReader({self.location!r})"

    def tables(self, namespace: str) -> list[str]:
        # Partitions are read through their parent; views repeat their tables.
        with self._conn.transaction():
            rows = self._conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1",
                (namespace,),
            ).fetchall()
        return [r[0] for r in rows]

    def columns(self, namespace: str, table: str) -> dict[str, str]:
        with self._conn.transaction():
            rows = self._conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (namespace, table),
            ).fetchall()
        kinds = {"text": "text", "character varying": "text", "character": "text", "jsonb": "json"}
        kinds.update({"json": "json", "bytea": "bytes", "ARRAY": "array"})
        return {name: kinds.get(kind, "other") for name, kind in rows}

    def rows(self, namespace: str, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        from psycopg import sql

        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(namespace, table)
        )
        with self._conn.transaction(), self._conn.cursor(name="cdc_masking_verify") as cur:
            cur.itersize = self.batch_rows
            cur.execute(query)
            yield from cur

    def close(self) -> None:
        self._conn.close()


class ClickHouseReader:
    """:class:`DestinationReader` over the ClickHouse destination's client (server or chdb).

    Every stored row version is read (no ``FINAL``): a version not merged away yet is stored
    data too, and must be masked like the latest.
    """

    def __init__(self, url: str, location: str = "clickhouse", *, password_file: str | None = None) -> None:
        from cdc_platform.destinations.clickhouse.client import ConnectionSpec, connect

        self.location = location
        try:
            self._client = connect(ConnectionSpec.parse(url, password_file))
        except ValueError as exc:  # ClickHouseURLError: its message never repeats secrets
            raise VerifyError(f"{location}: {exc}") from None

    def __repr__(self) -> str:
        return f"ClickHouseReader({self.location!r})"

    @staticmethod
    def _text(v: Any) -> str:
        return v.decode("utf-8") if isinstance(v, bytes) else str(v)

    def tables(self, namespace: str) -> list[str]:
        from cdc_platform.destinations.clickhouse.client import literal

        rows = self._client.query(
            f"SELECT name FROM system.tables WHERE database = {literal(namespace)} "
            "AND engine NOT LIKE '%View' ORDER BY name"
        )
        return [self._text(r[0]) for r in rows]

    def columns(self, namespace: str, table: str) -> dict[str, str]:
        from cdc_platform.destinations.clickhouse.client import literal

        rows = self._client.query(
            f"SELECT name, type FROM system.columns WHERE database = {literal(namespace)} "
            f"AND table = {literal(table)}"
        )
        out = {}
        for name, type_name in rows:
            t = self._text(type_name)
            if t.startswith(("Array(", "Map(", "Tuple(")):
                kind = "json"  # lists, dicts and tuples: strings inside are searched
            elif re.fullmatch(r"(Nullable\(|LowCardinality\()*(String|FixedString\(\d+\))\)*", t):
                kind = "bytes"  # text and binary alike (blobs, cell state)
            else:
                kind = "other"
            out[self._text(name)] = kind
        return out

    def rows(self, namespace: str, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        from cdc_platform.destinations.clickhouse.client import qualified
        from cdc_platform.destinations.clickhouse.typemap import quote_identifier

        names = ", ".join(quote_identifier(c) for c in columns)
        yield from self._client.query(f"SELECT {names} FROM {qualified(namespace, table)}")

    def close(self) -> None:
        self._client.close()


# --------------------------------------------------------------------------------------------
# Values as destinations hold them → the decoder's Python values


class _Unreadable:
    """A stored value that is not a representation of the leaf type at all."""


UNREADABLE = _Unreadable()


def normalize(t: CqlType, value: Any) -> Any:
    """A stored value (typed column, jsonb/toJson text, Python driver value) as the decoder gives it."""
    name = native_name(t)
    if name is None:
        # ClickHouse cannot make collections or tuples Nullable: null is stored as an empty
        # collection, or a tuple of nulls.
        if isinstance(t, (ListType, SetType, MapType, VectorType)) and value in ([], (), {}):
            return None
        if (
            isinstance(t, (UserType, TupleType))
            and isinstance(value, tuple)
            and all(v is None for v in value)
        ):
            return None
        return value
    if isinstance(value, (bytes, bytearray)) and name != "blob":
        try:  # ClickHouse String values come back as bytes (chdb)
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return UNREADABLE
    try:
        if name in ("text", "ascii"):
            return value if isinstance(value, str) else UNREADABLE
        if name == "date":
            if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
                return days_from_civil(value.year, value.month, value.day)
            if isinstance(value, str):
                m = _DATE.match(value)
                return days_from_civil(int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else UNREADABLE
            return value if isinstance(value, int) and not isinstance(value, bool) else UNREADABLE
        if name == "timestamp":
            if isinstance(value, dt.datetime):
                aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
                delta = aware - _EPOCH
                return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
            if isinstance(value, str):
                return _timestamp_ms(value)
            return value if isinstance(value, int) and not isinstance(value, bool) else UNREADABLE
        if name == "inet":
            if isinstance(value, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
                return value.ip
            if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                return value
            return ipaddress.ip_address(str(value))
        if name in INTEGER_RANGES:
            number = decimal.Decimal(str(value))
            return int(number) if number == number.to_integral_value() else UNREADABLE
        if name == "decimal":
            return decimal.Decimal(str(value))
        if name in ("float", "double"):
            return float(value)
    except (ValueError, ArithmeticError, TypeError):
        return UNREADABLE
    return value


def _timestamp_ms(text: str) -> Any:
    m = _TIMESTAMP.match(text)
    if not m:
        return UNREADABLE
    y, mo, d, hh, mi, ss = (int(g) for g in m.groups()[:6])
    frac = (m.group(7) or "0").ljust(9, "0")
    offset = 0
    zone = m.group(8)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:])) * 60_000
    return (days_from_civil(y, mo, d) * 86_400 + hh * 3600 + mi * 60 + ss) * 1000 + int(frac[:3]) - offset


def _json(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return value
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _json_key(name: str) -> str:
    return str(json.loads(json_name(name)))


def walk(t: CqlType, value: Any, steps: Sequence[Step]) -> Iterator[tuple[CqlType, Any]]:
    """The parts of a stored value (``toJson()`` shape) a rule's steps designate."""
    if value is None:
        return
    if not steps:
        yield t, value
        return
    step, rest = steps[0], steps[1:]
    value = _json(value)
    if step.kind == "field" and isinstance(t, UserType) and isinstance(value, (dict, list, tuple)):
        index = t.field_names.index(step.name)
        if isinstance(value, dict):
            key = _json_key(step.name)
            if key in value:
                yield from walk(t.field_types[index], value[key], rest)
        elif index < len(value):  # a (named) tuple, in field order (ClickHouse)
            yield from walk(t.field_types[index], value[index], rest)
    elif step.kind == "component" and isinstance(t, TupleType) and isinstance(value, (list, tuple)):
        if step.index < len(value):
            yield from walk(t.elements[step.index], value[step.index], rest)
    elif isinstance(t, MapType) and step.kind in ("elements", "keys"):
        # A JSON object (PostgreSQL jsonb, ClickHouse Map) or a list of pairs.
        pairs = (
            list(value.items())
            if isinstance(value, dict)
            else list(value)
            if isinstance(value, (list, tuple))
            else []
        )
        for pair in pairs:
            if step.kind == "keys":
                yield from walk(t.key, pair[0], rest)
            else:
                yield from walk(t.value, pair[1], rest)
    elif (
        step.kind == "elements"
        and isinstance(t, (ListType, SetType, VectorType))
        and isinstance(value, (list, tuple))
    ):
        for item in value:
            yield from walk(t.element, item, rest)
    else:
        yield t, UNREADABLE


# --------------------------------------------------------------------------------------------
# Scanning


class _Seeds:
    def __init__(self, seeds: Iterable[str]) -> None:
        self.seeds = [s for s in dict.fromkeys(seeds) if s]
        self.index = {s: i for i, s in enumerate(self.seeds)}
        alternatives = sorted(self.seeds, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None
        self.encoded = [(i, s.encode("utf-8")) for i, s in enumerate(self.seeds)]

    def find(self, value: Any) -> int | None:
        """Index of a seed the value contains (strings inside JSON and arrays included)."""
        if self.pattern is None or value is None:
            return None
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            return next((i for i, s in self.encoded if s in raw), None)
        for text in _strings(value):
            m = self.pattern.search(text)
            if m:
                return self.index[m.group(0)]
        return None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (bytes, bytearray)):
        yield bytes(value).decode("utf-8", "replace")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


class _Scanner:
    def __init__(self, policy: MaskingPolicy, schema: Schema, report: VerifyReport, seeds: _Seeds) -> None:
        self.policy = policy
        self.schema = schema
        self.report = report
        self.seeds = seeds

    def check(
        self, where: tuple[str, str], column: str, t: CqlType, rule: Rule, value: Any, steps: Sequence[Step]
    ) -> None:
        location, table = where
        label = column if column == rule.path else f"{column} -> {rule.path}"
        for leaf_type, part in walk(t, value, steps):
            v = normalize(leaf_type, part) if part is not UNREADABLE else part
            if v is None:
                continue
            reason = f"not a stored {leaf_type.cql()} value" if v is UNREADABLE else rule.masker.check(v)
            if reason is not None:
                self.report.add(location, table, label, f"{rule.algorithm}: {reason}", part)

    def seed(self, where: tuple[str, str], column: str, value: Any) -> None:
        i = self.seeds.find(value)
        if i is not None:
            self.report.add(where[0], where[1], column, f"contains plaintext seed #{i}", value)

    def cells(self, where: tuple[str, str], table: Table, column: Column, cells: Any) -> None:
        """Cells in ``segment decode`` / history JSON: ``{value, path, deleted, …}`` objects."""
        rules = [r for r in self.policy.rules(table) if r.column == column.name]
        if not rules:
            return
        t = column.type
        for cell in cells if isinstance(cells, list) else [cells]:
            if not isinstance(cell, dict) or cell.get("collection_deletion"):
                continue
            value, path = cell.get("value"), cell.get("path")
            for rule in rules:
                steps = rule.steps
                if not t.is_multicell:
                    self.check(where, column.name, t, rule, value, steps)
                elif not steps:
                    if value is not None or path is not None:
                        self.report.add(
                            where[0], where[1], rule.path, f"{rule.algorithm}: not redacted", cell
                        )
                elif isinstance(t, UserType):
                    if steps[0].kind == "field" and path == steps[0].name:
                        ft = t.field_types[t.field_names.index(steps[0].name)]
                        self.check(where, column.name, ft, rule, value, steps[1:])
                elif isinstance(t, SetType):
                    self.check(where, column.name, t.element, rule, path, steps[1:])
                elif isinstance(t, MapType) and steps[0].kind == "keys":
                    self.check(where, column.name, t.key, rule, path, steps[1:])
                elif isinstance(t, MapType):
                    self.check(where, column.name, t.value, rule, value, steps[1:])
                elif isinstance(t, ListType):
                    self.check(where, column.name, t.element, rule, value, steps[1:])

    def change_json(self, where: tuple[str, str], doc: Any, fallback_table: str | None) -> None:
        """A quarantined row: a change as ``segment decode`` prints it, or column → value."""
        if not isinstance(doc, dict):
            return
        qualified = fallback_table
        if isinstance(doc.get("keyspace"), str) and isinstance(doc.get("table"), str):
            qualified = f"{doc['keyspace']}.{doc['table']}"
        if qualified is None or not self.policy.rules(qualified):
            return
        try:
            table = self.schema.table(qualified)
        except KeyError:
            return
        if isinstance(doc.get("cells"), list):
            values: dict[str, Any] = {}
            for part in ("partition_key", "clustering"):
                if isinstance(doc.get(part), dict):
                    values.update(doc[part])
            for cell in doc["cells"]:
                if isinstance(cell, dict) and cell.get("column") in table.by_name:
                    self.cells(where, table, table.by_name[cell["column"]], cell)
        else:
            values = doc
        for rule in self.policy.rules(table):
            column = table.by_name.get(rule.column)
            key = _json_key(rule.column)
            if column is not None and key in values and (column.is_primary_key or "cells" not in doc):
                self.check(where, rule.column, column.type, rule, values[key], rule.steps)

    def scan_table(
        self,
        reader: DestinationReader,
        namespace: str,
        name: str,
        typed: dict[str, tuple[Table, Column]],
        *,
        history: Table | None = None,
        quarantine: bool = False,
    ) -> None:
        """One destination table: typed value columns by their rules, every text-ish column for seeds."""
        kinds = reader.columns(namespace, name)
        seed_columns = [c for c, k in kinds.items() if k != "other"] if self.seeds.pattern else []
        checked = {c: tc for c, tc in typed.items() if c in kinds and self.policy.rules(tc[0])}
        extra = []
        if history is not None and "_cdc_values" in kinds:
            extra.append("_cdc_values")
        if quarantine:
            extra += [c for c in ("row_json", "keyspace", "table", "table_name") if c in kinds]
        columns = list(dict.fromkeys([*checked, *seed_columns, *extra]))
        if not columns:
            return
        where = (reader.location, f"{namespace}.{name}")
        rules_by_column = {
            dest: (column, [r for r in self.policy.rules(table) if r.column == column.name])
            for dest, (table, column) in checked.items()
        }
        rows = 0
        for row in reader.rows(namespace, name, columns):
            rows += 1
            record = dict(zip(columns, row, strict=True))
            for dest, (column, rules) in rules_by_column.items():
                for rule in rules:
                    self.check(where, dest, column.type, rule, record[dest], rule.steps)
            for c in seed_columns:
                self.seed(where, c, record[c])
            if history is not None and isinstance(record.get("_cdc_values"), dict):
                for col_name, cells in record["_cdc_values"].items():
                    if col_name in history.by_name:
                        self.cells(where, history, history.by_name[col_name], cells)
            if quarantine and record.get("row_json") is not None:
                fallback = None
                ks, tn = record.get("keyspace"), record.get("table") or record.get("table_name")
                if isinstance(ks, str) and isinstance(tn, str):
                    fallback = f"{ks}.{tn}"
                self.change_json(where, _json(record["row_json"]), fallback)
        self.report.scanned[f"{reader.location} {namespace}.{name}"] = rows


def _scan_destination(scanner: _Scanner, reader: DestinationReader, schema_prefix: str) -> None:
    from cdc_platform.destinations import naming

    by_namespace: dict[str, list[Table]] = {}
    for table in scanner.schema.tables:
        by_namespace.setdefault(naming.table_name(schema_prefix + table.keyspace), []).append(table)
    for namespace, tables in sorted(by_namespace.items()):
        existing = reader.tables(namespace)
        if not existing:
            scanner.report.notes.append(f"{reader.location}: no schema {namespace}")
            continue
        layouts: dict[str, tuple[dict[str, tuple[Table, Column]], Table | None]] = {}
        for t in tables:
            keys = t.partition_key
            for suffix, columns in (
                ("", keys + t.clustering + t.regular),
                ("$static", keys + t.static),
                ("$partitions", keys),
                ("$history", keys + t.clustering),
            ):
                typed = {naming.value_column(c.name): (t, c) for c in columns}
                layouts[naming.table_name(t.name, suffix)] = (typed, t if suffix == "$history" else None)
        for name in existing:
            typed, history = layouts.get(name, ({}, None))
            scanner.scan_table(reader, namespace, name, typed, history=history)


def verify(
    policy: MaskingPolicy,
    schema: Schema,
    *,
    postgres_url: str | None = None,
    clickhouse_url: str | None = None,
    quarantine_url: str | None = None,
    seeds: Iterable[str] = (),
    schema_prefix: str = "",
    readers: Sequence[DestinationReader] = (),
) -> VerifyReport:
    """Scans destinations for values that look like unmasked PII of the policy's columns.

    Args:
        policy: the masking policy the destinations were loaded under.
        schema: the captured tables.
        postgres_url: the PostgreSQL (or TimescaleDB) destination.
        clickhouse_url: the ClickHouse destination (``clickhouse://…`` or ``chdb://…``).
        quarantine_url: the database holding ``cdc_meta.quarantine``.
        seeds: known plaintexts that must appear nowhere.
        schema_prefix: the destinations' schema prefix.
        readers: further destinations, scanned like PostgreSQL.

    Returns:
        The report; ``report.ok`` when nothing was found.

    Raises:
        VerifyError: a destination cannot be reached or has no reader.
    """
    report = VerifyReport()
    scanner = _Scanner(policy, schema, report, _Seeds(seeds))
    opened: list[DestinationReader] = []
    try:
        if postgres_url is not None:
            opened.append(PostgresReader(postgres_url))
        if clickhouse_url is not None:
            opened.append(ClickHouseReader(clickhouse_url))
        for reader in [*opened, *readers]:
            try:
                _scan_destination(scanner, reader, schema_prefix)
            except VerifyError:
                raise
            except Exception as exc:  # a driver's error: the queries carry names, never values
                raise VerifyError(f"{reader.location}: scanning failed: {type(exc).__name__}: {exc}") from exc
        if quarantine_url is not None:
            q = PostgresReader(quarantine_url, "quarantine")
            opened.append(q)
            if QUARANTINE_TABLE in q.tables(QUARANTINE_SCHEMA):
                scanner.scan_table(q, QUARANTINE_SCHEMA, QUARANTINE_TABLE, {}, quarantine=True)
            else:
                report.notes.append(f"quarantine: no table {QUARANTINE_SCHEMA}.{QUARANTINE_TABLE}")
    finally:
        for reader in opened:
            reader.close()
    return report
