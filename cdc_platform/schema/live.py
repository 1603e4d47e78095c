"""Fetching a schema from a live cluster's ``system_schema`` (``cdc-platform schema pull``).

Thin by design: the rows are turned into the same model the CQL parser builds, and printed
in the ``DESCRIBE … WITH INTERNALS`` layout. The parser remains the tested core; what is
tested here is the row-to-model step, with rows shaped like ``system_schema``'s.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from cdc_platform.schema.cql import quote_string, schema_to_cql
from cdc_platform.schema.model import Column, ColumnKind, DroppedColumn, Keyspace, Schema, Table
from cdc_platform.schema.types import UserType, parse_type

_EPOCH = dt.datetime(1970, 1, 1)
_KINDS = {
    "partition_key": ColumnKind.PARTITION_KEY,
    "clustering": ColumnKind.CLUSTERING,
    "regular": ColumnKind.REGULAR,
    "static": ColumnKind.STATIC,
}

Row = Mapping[str, Any]
_NAME = re.compile(r'"((?:[^"]|"")*)"|([A-Za-z_][A-Za-z0-9_]*)')


def _millis(value: Any) -> int:
    """``dropped_time`` as milliseconds (the driver returns a naive UTC datetime, or an int)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return (value - _EPOCH) // dt.timedelta(milliseconds=1)
    return int(value)


def _udt_order(rows: list[Row]) -> list[Row]:
    """Types in dependency order (a type after the types its fields use)."""
    by_name = {r["type_name"]: r for r in rows}
    done: list[Row] = []
    seen: set[str] = set()

    def names_in(type_text: str) -> set[str]:
        found = set()
        for m in _NAME.finditer(type_text):
            quoted, bare = m.group(1), m.group(2)
            found.add(quoted.replace('""', '"') if quoted is not None else bare.lower())
        return found

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for ftype in by_name[name]["field_types"]:
            for other in names_in(ftype):
                if other != name and other in by_name:
                    visit(other)
        done.append(by_name[name])

    for name in sorted(by_name):
        visit(name)
    return done


def schema_from_rows(
    keyspaces: Iterable[Row],
    tables: Iterable[Row],
    columns: Iterable[Row],
    dropped_columns: Iterable[Row],
    types: Iterable[Row],
) -> Schema:
    """Builds the schema model from ``system_schema`` rows (as mappings of column → value)."""
    schema = Schema()
    for r in keyspaces:
        replication = dict(r.get("replication") or {})
        cls = replication.get("class", "")
        if cls.startswith("org.apache.cassandra.locator."):
            replication["class"] = cls.rsplit(".", 1)[1]
        schema.keyspaces[r["keyspace_name"]] = Keyspace(
            r["keyspace_name"], replication, bool(r.get("durable_writes", True))
        )
    type_rows: dict[str, list[Row]] = {}
    for r in types:
        type_rows.setdefault(r["keyspace_name"], []).append(r)
    for ks_name, rows in type_rows.items():
        ks = schema.keyspaces.setdefault(ks_name, Keyspace(ks_name))
        for r in _udt_order(rows):
            names = tuple(r["field_names"])
            ftypes = tuple(parse_type(t, ks.types, ks_name).freeze() for t in r["field_types"])
            ks.types[r["type_name"]] = UserType(ks_name, r["type_name"], names, ftypes)
    cols: dict[tuple[str, str], list[Row]] = {}
    for r in columns:
        cols.setdefault((r["keyspace_name"], r["table_name"]), []).append(r)
    drops: dict[tuple[str, str], list[Row]] = {}
    for r in dropped_columns:
        drops.setdefault((r["keyspace_name"], r["table_name"]), []).append(r)
    for r in tables:
        ks_name, t_name = r["keyspace_name"], r["table_name"]
        ks = schema.keyspaces.setdefault(ks_name, Keyspace(ks_name))
        table_columns = []
        for c in cols.get((ks_name, t_name), []):
            kind = _KINDS[c["kind"]]
            table_columns.append(
                Column(
                    c["column_name"],
                    parse_type(c["type"], ks.types, ks_name),
                    kind,
                    max(int(c.get("position", 0) or 0), 0),
                    (c.get("clustering_order") or "").lower() == "desc",
                )
            )
        dropped = {}
        for d in drops.get((ks_name, t_name), []):
            kind = ColumnKind.STATIC if (d.get("kind") or "regular") == "static" else ColumnKind.REGULAR
            dropped[d["column_name"]] = DroppedColumn(
                d["column_name"],
                parse_type(d["type"], ks.types, ks_name),
                _millis(d["dropped_time"]) * 1000,
                kind,
            )
        options = {"cdc": "true" if r.get("cdc") else "false"}
        if r.get("comment"):
            options["comment"] = quote_string(r["comment"])
        table_id = r["id"] if isinstance(r["id"], uuid.UUID) else uuid.UUID(str(r["id"]))
        ks.tables[t_name] = Table(ks_name, t_name, table_id, table_columns, dropped, options)
    return schema


def pull_schema(hosts: list[str], port: int, keyspaces: list[str], *, username: str | None = None) -> str:
    """Connects with cassandra-driver and returns the keyspaces as schema CQL.

    The password is read from ``$CDC_CASSANDRA_PASSWORD`` (never from arguments or config).
    """
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster
    from cassandra.query import dict_factory

    auth = None
    if username:
        auth = PlainTextAuthProvider(username=username, password=os.environ.get("CDC_CASSANDRA_PASSWORD", ""))
    cluster = Cluster(hosts, port=port, auth_provider=auth)
    try:
        session = cluster.connect()
        session.row_factory = dict_factory

        def rows(table: str) -> list[Row]:
            out: list[Row] = []
            for ks in keyspaces:
                out.extend(
                    session.execute(f"SELECT * FROM system_schema.{table} WHERE keyspace_name = %s", (ks,))
                )
            return out

        model = schema_from_rows(
            rows("keyspaces"), rows("tables"), rows("columns"), rows("dropped_columns"), rows("types")
        )
    finally:
        cluster.shutdown()
    return schema_to_cql(model)
