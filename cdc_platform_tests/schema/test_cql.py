"""Schema CQL (``DESCRIBE KEYSPACE … WITH INTERNALS``): parsing, errors and the printer."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_platform.schema.cql import SchemaParseError, load_schema, parse_schema, quote_string, schema_to_cql
from cdc_platform.schema.model import Column, ColumnKind, DroppedColumn, Keyspace, Schema, Table
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
)

# notes/describe.md §1: cqlsh 4.1 output, verbatim (the first line is empty).
DESCRIBE_41 = """
CREATE KEYSPACE shop WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': '3'}  AND durable_writes = true;

CREATE TYPE shop.address (
    street text,
    city text,
    "zipCode" int
);

CREATE TABLE shop.audit (
    id timeuuid PRIMARY KEY,
    actor text,
    msg text,
    old_flag boolean
) WITH ID = 1b6e0f50-7a1e-11ee-b5e3-8f1d2c3b4a59
    AND additional_write_policy = '99p'
    AND bloom_filter_fp_chance = 0.01
    AND caching = {'keys': 'ALL', 'rows_per_partition': 'NONE'}
    AND cdc = false
    AND comment = ''
    AND compaction = {'class': 'org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy', 'max_threshold': '32', 'min_threshold': '4'}
    AND compression = {'chunk_length_in_kb': '16', 'class': 'org.apache.cassandra.io.compress.LZ4Compressor'}
    AND memtable = 'default'
    AND crc_check_chance = 1.0
    AND default_time_to_live = 0
    AND extensions = {}
    AND gc_grace_seconds = 864000
    AND max_index_interval = 2048
    AND memtable_flush_period_in_ms = 0
    AND min_index_interval = 128
    AND read_repair = 'BLOCKING'
    AND speculative_retry = '99p';
ALTER TABLE shop.audit DROP old_flag USING TIMESTAMP 1698900000123000;

CREATE TABLE shop."UserEvents" (
    tenant_id uuid,
    bucket int,
    event_time timestamp,
    seq int,
    tenant_name text static,
    "eventType" text,
    home frozen<address>,
    payload blob,
    attrs map<text, int>,
    history list<frozen<address>>,
    tags set<text>,
    notes text,
    old_addr frozen<tuple<text, text, int>>,
    legacy_score int,
    PRIMARY KEY ((tenant_id, bucket), event_time, seq)
) WITH ID = 5a1c3940-7b2d-11ee-8c2a-1f3e5d7b9a01
    AND CLUSTERING ORDER BY (event_time DESC, seq ASC)
    AND additional_write_policy = '99p'
    AND bloom_filter_fp_chance = 0.01
    AND caching = {'keys': 'ALL', 'rows_per_partition': 'NONE'}
    AND cdc = true
    AND comment = 'Tenant''s raw "event" feed'
    AND compaction = {'class': 'org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy', 'max_threshold': '32', 'min_threshold': '4'}
    AND compression = {'chunk_length_in_kb': '16', 'class': 'org.apache.cassandra.io.compress.LZ4Compressor'}
    AND memtable = 'default'
    AND crc_check_chance = 1.0
    AND default_time_to_live = 0
    AND extensions = {}
    AND gc_grace_seconds = 864000
    AND max_index_interval = 2048
    AND memtable_flush_period_in_ms = 0
    AND min_index_interval = 128
    AND read_repair = 'BLOCKING'
    AND speculative_retry = '99p';
ALTER TABLE shop."UserEvents" DROP notes USING TIMESTAMP 1699012345678000;
ALTER TABLE shop."UserEvents" ADD notes text;
ALTER TABLE shop."UserEvents" DROP old_addr USING TIMESTAMP 1699012399001000;
ALTER TABLE shop."UserEvents" DROP legacy_score USING TIMESTAMP 1699012400000000;

CREATE INDEX "UserEvents_eventType_idx" ON shop."UserEvents" ("eventType");

"""

# notes/describe.md §1b: the same table on 5.0 with a vector column, verbatim, after the
# keyspace and type statements of the 4.1 example.
DESCRIBE_50 = (
    "CREATE KEYSPACE shop WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': '3'}  "
    "AND durable_writes = true;\n\n"
    'CREATE TYPE shop.address (\n    street text,\n    city text,\n    "zipCode" int\n);\n\n'
    """CREATE TABLE shop."UserEvents" (
    tenant_id uuid,
    bucket int,
    event_time timestamp,
    seq int,
    tenant_name text static,
    embedding vector<float, 3>,
    "eventType" text,
    home frozen<address>,
    payload blob,
    attrs map<text, int>,
    history list<frozen<address>>,
    tags set<text>,
    notes text,
    old_addr frozen<tuple<text, text, int>>,
    legacy_score int,
    PRIMARY KEY ((tenant_id, bucket), event_time, seq)
) WITH ID = 5a1c3940-7b2d-11ee-8c2a-1f3e5d7b9a01
    AND CLUSTERING ORDER BY (event_time DESC, seq ASC)
    AND additional_write_policy = '99p'
    AND allow_auto_snapshot = true
    AND bloom_filter_fp_chance = 0.01
    AND caching = {'keys': 'ALL', 'rows_per_partition': 'NONE'}
    AND cdc = true
    AND comment = 'Tenant''s raw "event" feed'
    AND compaction = {'class': 'org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy', 'max_threshold': '32', 'min_threshold': '4'}
    AND compression = {'chunk_length_in_kb': '16', 'class': 'org.apache.cassandra.io.compress.LZ4Compressor'}
    AND memtable = 'default'
    AND crc_check_chance = 1.0
    AND default_time_to_live = 0
    AND extensions = {}
    AND gc_grace_seconds = 864000
    AND incremental_backups = true
    AND max_index_interval = 2048
    AND memtable_flush_period_in_ms = 0
    AND min_index_interval = 128
    AND read_repair = 'BLOCKING'
    AND speculative_retry = '99p';
ALTER TABLE shop."UserEvents" DROP notes USING TIMESTAMP 1699012345678000;
ALTER TABLE shop."UserEvents" ADD notes text;
ALTER TABLE shop."UserEvents" DROP old_addr USING TIMESTAMP 1699012399001000;
ALTER TABLE shop."UserEvents" DROP legacy_score USING TIMESTAMP 1699012400000000;
"""
)

TEXT = NativeType("text")
INT = NativeType("int")
ADDRESS = UserType("shop", "address", ("street", "city", "zipCode"), (TEXT, TEXT, INT))
KEYSPACE_LINE = (
    "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};"
)
TABLE_ID = uuid.UUID("11111111-2222-3333-4444-555555555555")


def _by_name(table: Table) -> dict[str, Column]:
    return {c.name: c for c in table.columns}


# --------------------------------------------------------------------------------------------
# The 4.1 example


def test_41_keyspace_and_type() -> None:
    schema = parse_schema(DESCRIBE_41)
    assert list(schema.keyspaces) == ["shop"]
    ks = schema.keyspaces["shop"]
    assert ks.replication == {"class": "NetworkTopologyStrategy", "dc1": "3"}
    assert ks.durable_writes is True
    assert ks.types == {"address": ADDRESS}


def test_41_audit_table() -> None:
    table = parse_schema(DESCRIBE_41).table("shop.audit")
    assert table.id == uuid.UUID("1b6e0f50-7a1e-11ee-b5e3-8f1d2c3b4a59")
    assert _by_name(table) == {
        "id": Column("id", NativeType("timeuuid"), ColumnKind.PARTITION_KEY, 0),
        "actor": Column("actor", TEXT, ColumnKind.REGULAR),
        "msg": Column("msg", TEXT, ColumnKind.REGULAR),
    }
    assert table.dropped == {
        "old_flag": DroppedColumn("old_flag", NativeType("boolean"), 1698900000123000, ColumnKind.REGULAR)
    }
    assert table.cdc is False
    assert table.option("comment") == ""
    assert table.option("cdc") == "false"
    assert table.option("read_repair") == "BLOCKING"
    assert table.option("gc_grace_seconds") == "864000"


def _user_events_columns() -> dict[str, Column]:
    home = ADDRESS.freeze()
    return {
        "tenant_id": Column("tenant_id", NativeType("uuid"), ColumnKind.PARTITION_KEY, 0),
        "bucket": Column("bucket", INT, ColumnKind.PARTITION_KEY, 1),
        "event_time": Column("event_time", NativeType("timestamp"), ColumnKind.CLUSTERING, 0, reversed=True),
        "seq": Column("seq", INT, ColumnKind.CLUSTERING, 1, reversed=False),
        "tenant_name": Column("tenant_name", TEXT, ColumnKind.STATIC),
        "eventType": Column("eventType", TEXT, ColumnKind.REGULAR),
        "home": Column("home", home, ColumnKind.REGULAR),
        "payload": Column("payload", NativeType("blob"), ColumnKind.REGULAR),
        "attrs": Column("attrs", MapType(TEXT, INT, False), ColumnKind.REGULAR),
        "history": Column("history", ListType(home, False), ColumnKind.REGULAR),
        "tags": Column("tags", SetType(TEXT, False), ColumnKind.REGULAR),
        "notes": Column("notes", TEXT, ColumnKind.REGULAR),
    }


def _user_events_dropped() -> dict[str, DroppedColumn]:
    return {
        "notes": DroppedColumn("notes", TEXT, 1699012345678000),
        "old_addr": DroppedColumn("old_addr", TupleType((TEXT, TEXT, INT)), 1699012399001000),
        "legacy_score": DroppedColumn("legacy_score", INT, 1699012400000000),
    }


def test_41_user_events_table() -> None:
    schema = parse_schema(DESCRIBE_41)
    # The index is skipped, the mixed-case table name is kept as written.
    assert sorted(schema.keyspaces["shop"].tables) == ["UserEvents", "audit"]
    table = schema.table("shop.UserEvents")
    assert table.id == uuid.UUID("5a1c3940-7b2d-11ee-8c2a-1f3e5d7b9a01")
    assert table.cql_name == 'shop."UserEvents"'
    assert _by_name(table) == _user_events_columns()
    assert len(table.columns) == len(_user_events_columns())
    assert [c.name for c in table.partition_key] == ["tenant_id", "bucket"]
    assert [(c.name, c.reversed) for c in table.clustering] == [("event_time", True), ("seq", False)]
    assert [c.name for c in table.static] == ["tenant_name"]
    assert {c.name for c in table.columns if c.is_complex} == {"attrs", "history", "tags"}
    assert table.dropped == _user_events_dropped()
    assert table.cdc is True
    assert table.option("comment") == 'Tenant\'s raw "event" feed'
    assert table.option("caching", "").startswith("{")


def test_41_dropped_and_readded_column_has_live_type_and_drop_record() -> None:
    table = parse_schema(DESCRIBE_41).table("shop.UserEvents")
    assert table.column("notes") == Column("notes", TEXT, ColumnKind.REGULAR)
    assert table.dropped["notes"].dropped_time == 1699012345678000
    assert b"notes" in table.by_name_bytes
    assert b"notes" in table.dropped_by_name_bytes
    assert "old_addr" not in table.by_name
    assert "legacy_score" not in table.by_name


def test_readded_column_with_another_type_and_static() -> None:
    text = f"""{KEYSPACE_LINE}
CREATE TABLE ks.t (
    id int,
    ck int,
    v int static,
    PRIMARY KEY (id, ck)
) WITH ID = {TABLE_ID};
ALTER TABLE ks.t DROP v USING TIMESTAMP 1000;
ALTER TABLE ks.t ADD v frozen<list<text>> static;
"""
    table = parse_schema(text).table("ks.t")
    assert table.column("v") == Column("v", ListType(TEXT, True), ColumnKind.STATIC)
    assert table.dropped == {"v": DroppedColumn("v", INT, 1000, ColumnKind.STATIC)}


# --------------------------------------------------------------------------------------------
# The 5.0 example


def test_50_user_events_with_vector() -> None:
    schema = parse_schema(DESCRIBE_50)
    table = schema.table("shop.UserEvents")
    expected = _user_events_columns()
    expected["embedding"] = Column("embedding", VectorType(NativeType("float"), 3), ColumnKind.REGULAR)
    assert _by_name(table) == expected
    assert table.dropped == _user_events_dropped()
    assert table.column("embedding").type.fixed_length == 12
    assert not table.column("embedding").is_complex
    assert table.option("allow_auto_snapshot") == "true"
    assert table.option("incremental_backups") == "true"
    assert table.cdc is True


# --------------------------------------------------------------------------------------------
# CASSANDRA-19747: no comma between dropped columns of a single-PK table

MISSING_COMMAS = f"""
CREATE KEYSPACE ks WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': '1'}}  AND durable_writes = true;

CREATE TABLE ks.t (
    id int PRIMARY KEY,
    v text,
    field2 text
    field3 frozen<list<int>>
    "Field4" set<text>
    field5 frozen<tuple<int, text>>
    field6 int static
) WITH ID = {TABLE_ID}
    AND cdc = false;
ALTER TABLE ks.t DROP field2 USING TIMESTAMP 1;
ALTER TABLE ks.t DROP field3 USING TIMESTAMP 2;
ALTER TABLE ks.t DROP "Field4" USING TIMESTAMP 3;
ALTER TABLE ks.t DROP field5 USING TIMESTAMP 4;
ALTER TABLE ks.t DROP field6 USING TIMESTAMP 5;
"""


def test_missing_commas_between_dropped_columns() -> None:
    table = parse_schema(MISSING_COMMAS).table("ks.t")
    assert _by_name(table) == {
        "id": Column("id", INT, ColumnKind.PARTITION_KEY),
        "v": Column("v", TEXT, ColumnKind.REGULAR),
    }
    assert table.dropped == {
        "field2": DroppedColumn("field2", TEXT, 1),
        "field3": DroppedColumn("field3", ListType(INT, True), 2),
        "Field4": DroppedColumn("Field4", SetType(TEXT, False), 3),
        "field5": DroppedColumn("field5", TupleType((INT, TEXT)), 4),
        "field6": DroppedColumn("field6", INT, 5, ColumnKind.STATIC),
    }


@pytest.mark.parametrize("name", ["static", "masked", "check"])
def test_missing_comma_before_a_column_named_like_a_clause_keyword(name: str) -> None:
    # Unreserved keywords print bare (maybeQuote), so an affected DESCRIBE can contain
    # ``a int`` directly followed by ``static int``.
    text = f"""{KEYSPACE_LINE}
CREATE TABLE ks.t (
    id int PRIMARY KEY,
    a int
    {name} int
) WITH ID = {TABLE_ID};
ALTER TABLE ks.t DROP a USING TIMESTAMP 1;
ALTER TABLE ks.t DROP {name} USING TIMESTAMP 2;
"""
    table = parse_schema(text).table("ks.t")
    assert table.dropped == {"a": DroppedColumn("a", INT, 1), name: DroppedColumn(name, INT, 2)}


@pytest.mark.parametrize("name", ["static", "masked", "check", "primary_key", "key", "frozen", "list"])
def test_columns_named_like_keywords(name: str) -> None:
    text = f"""{KEYSPACE_LINE}
CREATE TABLE ks.t (
    id int,
    ck int,
    {name} int static,
    x int,
    PRIMARY KEY (id, ck)
) WITH ID = {TABLE_ID};
"""
    table = parse_schema(text).table("ks.t")
    assert table.column(name) == Column(name, INT, ColumnKind.STATIC)
    assert table.column("x") == Column("x", INT, ColumnKind.REGULAR)


# --------------------------------------------------------------------------------------------
# Comments, skipped statements, USE


def test_comments_are_ignored() -> None:
    text = f"""-- a line comment; with a semicolon
// another one
/* CREATE TABLE ks.ghost (id int PRIMARY KEY) WITH ID = 99999999-9999-9999-9999-999999999999; */
{KEYSPACE_LINE}
CREATE TABLE ks.t ( -- trailing comment
    id int PRIMARY KEY, /* inline; block */
    v text -- last column
) WITH ID = {TABLE_ID}
    AND comment = 'not -- a comment /* either */';
/* Warning: Table ks.legacy omitted because it has constructs not compatible with CQL (was created via legacy API).
Approximate structure, for reference:
CREATE TABLE ks.legacy (key blob PRIMARY KEY) WITH COMPACT STORAGE;
*/
"""
    schema = parse_schema(text)
    assert list(schema.keyspaces["ks"].tables) == ["t"]
    table = schema.table("ks.t")
    assert set(table.by_name) == {"id", "v"}
    assert table.option("comment") == "not -- a comment /* either */"


def test_functions_aggregates_views_indexes_and_triggers_are_skipped() -> None:
    text = f"""{KEYSPACE_LINE}

CREATE TABLE ks.base (
    pk int,
    ck int,
    v text,
    PRIMARY KEY (pk, ck)
) WITH ID = {TABLE_ID};

CREATE FUNCTION ks.joiner(a text, b text)
    CALLED ON NULL INPUT
    RETURNS text
    LANGUAGE java
    AS $$ return a + ";" + b + "'"; $$;

CREATE OR REPLACE FUNCTION ks.state(s int, v int)
    RETURNS NULL ON NULL INPUT RETURNS int LANGUAGE java AS $$ return s + v; $$;

CREATE AGGREGATE ks.total(int)
    SFUNC state
    STYPE int
    INITCOND 0;

CREATE INDEX base_v_idx ON ks.base (v);
CREATE CUSTOM INDEX base_sai ON ks.base (v) USING 'StorageAttachedIndex' WITH OPTIONS = {{'case_sensitive': 'false'}};
CREATE TRIGGER audit ON ks.base USING 'org.example.AuditTrigger';

CREATE MATERIALIZED VIEW ks.by_v AS
    SELECT *
    FROM ks.base
    WHERE v IS NOT NULL AND pk IS NOT NULL AND ck IS NOT NULL AND v = 'x;y'
    PRIMARY KEY (v, pk, ck)
 WITH CLUSTERING ORDER BY (pk ASC, ck ASC)
    AND comment = 'view; with ''quotes''';

CREATE TABLE ks.after (id int PRIMARY KEY) WITH ID = 22222222-2222-2222-2222-222222222222;
"""
    schema = parse_schema(text)
    assert sorted(schema.keyspaces["ks"].tables) == ["after", "base"]
    assert set(schema.table("ks.base").by_name) == {"pk", "ck", "v"}


def test_use_statement_qualifies_names() -> None:
    text = f"""{KEYSPACE_LINE}
CREATE KEYSPACE other WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': '1'}};
USE other;
CREATE TYPE pair (a int, b text);
CREATE TABLE t (
    id int PRIMARY KEY,
    p frozen<pair>,
    gone int
) WITH ID = {TABLE_ID};
ALTER TABLE t DROP gone USING TIMESTAMP 7;
USE "ks";
CREATE TABLE t (id int PRIMARY KEY) WITH ID = 22222222-2222-2222-2222-222222222222;
"""
    schema = parse_schema(text)
    other = schema.table("other.t")
    pair = UserType("other", "pair", ("a", "b"), (INT, TEXT))
    assert schema.keyspaces["other"].types == {"pair": pair}
    assert other.column("p").type == pair.freeze()
    assert other.dropped == {"gone": DroppedColumn("gone", INT, 7)}
    assert schema.table("ks.t").id == uuid.UUID("22222222-2222-2222-2222-222222222222")


def test_unqualified_name_without_keyspace_is_an_error() -> None:
    with pytest.raises(SchemaParseError, match="not qualified"):
        parse_schema(f"CREATE TABLE t (id int PRIMARY KEY) WITH ID = {TABLE_ID};")


def test_quoted_mixed_case_and_escaped_names() -> None:
    text = f'''CREATE KEYSPACE "MyKs" WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': '1'}};
CREATE TYPE "MyKs"."Point ""2D""" ("X" int, "select" int);
CREATE TABLE "MyKs"."Table" (
    "Id" int,
    "order" int,
    "we""ird" frozen<"Point ""2D""">,
    "日本" text,
    PRIMARY KEY ("Id", "order")
) WITH ID = {TABLE_ID}
    AND CLUSTERING ORDER BY ("order" DESC);
'''
    schema = parse_schema(text)
    point = UserType("MyKs", 'Point "2D"', ("X", "select"), (INT, INT))
    assert schema.keyspaces["MyKs"].types == {'Point "2D"': point}
    table = schema.table("MyKs.Table")
    assert _by_name(table) == {
        "Id": Column("Id", INT, ColumnKind.PARTITION_KEY, 0),
        "order": Column("order", INT, ColumnKind.CLUSTERING, 0, reversed=True),
        'we"ird': Column('we"ird', point.freeze(), ColumnKind.REGULAR),
        "日本": Column("日本", TEXT, ColumnKind.REGULAR),
    }


def test_quoted_udt_name_with_space_before_angle_bracket() -> None:
    text = f"""{KEYSPACE_LINE}
CREATE TYPE ks."a >b" (x int);
CREATE TABLE ks.t (id int PRIMARY KEY, v frozen<"a >b">, w list<frozen<"a >b">>) WITH ID = {TABLE_ID};
"""
    schema = parse_schema(text)
    udt = schema.keyspaces["ks"].types["a >b"]
    assert schema.table("ks.t").column("v").type == udt.freeze()
    assert schema.table("ks.t").column("w").type == ListType(udt.freeze(), False)


def test_unquoted_names_fold_to_lower_case() -> None:
    text = f"""CREATE KEYSPACE KS WITH replication = {{'class': 'SimpleStrategy'}};
CREATE TABLE Ks.MyTable (ID int PRIMARY KEY, Value TEXT) WITH ID = {TABLE_ID};
"""
    table = parse_schema(text).table("ks.mytable")
    assert set(table.by_name) == {"id", "value"}


def test_5x_masked_columns_and_3x_layout() -> None:
    text = f"""CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {{ 'class' : 'SimpleStrategy', 'replication_factor' : '1' }} AND durable_writes = false;
CREATE TYPE IF NOT EXISTS ks.t2(a int, b text);
CREATE TABLE IF NOT EXISTS ks.t (
\tid int,
\tsecret text MASKED WITH system.mask_inner(1, null),
\tother frozen<t2> MASKED WITH DEFAULT,
\tPRIMARY KEY (id))
\tWITH ID = {TABLE_ID}
\tAND bloom_filter_fp_chance = 0.01
\tAND caching = {{ 'keys': 'ALL', 'rows_per_partition': 'NONE' }}
\tAND extensions = {{  }}
\tAND crc_check_chance = 1.0E-4;
"""
    schema = parse_schema(text)
    assert schema.keyspaces["ks"].durable_writes is False
    table = schema.table("ks.t")
    assert table.column("secret") == Column("secret", TEXT, ColumnKind.REGULAR)
    assert table.column("other").type == schema.keyspaces["ks"].types["t2"].freeze()
    assert table.option("crc_check_chance") == "1.0E-4"


# --------------------------------------------------------------------------------------------
# 3.x: ALTER … DROP for a column missing from the column list


THREE_X_DROP = f"""{KEYSPACE_LINE}
CREATE TABLE ks.t (
    id int PRIMARY KEY,
    v text
) WITH ID = {TABLE_ID};
ALTER TABLE ks.t DROP old USING TIMESTAMP 1500000000000000;
"""


def test_3x_drop_without_type_is_recorded_as_unknown_type() -> None:
    table = parse_schema(THREE_X_DROP).table("ks.t")
    dropped = table.dropped["old"]
    assert dropped.type_known is False
    assert dropped.dropped_time == 1500000000000000
    assert dropped.kind is ColumnKind.REGULAR
    assert set(table.by_name) == {"id", "v"}


# --------------------------------------------------------------------------------------------
# Errors name the line


def _error_line(text: str) -> tuple[int | None, str]:
    with pytest.raises(SchemaParseError) as info:
        parse_schema(text, source="schema.cql")
    return info.value.line, str(info.value)


def test_error_missing_table_id() -> None:
    line, message = _error_line(f"{KEYSPACE_LINE}\n\nCREATE TABLE ks.t (\n    id int PRIMARY KEY\n);\n")
    assert line == 3
    assert "WITH ID" in message
    assert "ks.t" in message
    assert "schema.cql, line 3" in message


def test_error_unknown_column_type() -> None:
    text = f"{KEYSPACE_LINE}\nCREATE TABLE ks.t (\n    id int PRIMARY KEY,\n    v frozen<nosuch>\n) WITH ID = {TABLE_ID};\n"
    line, message = _error_line(text)
    assert line == 4
    assert "nosuch" in message


def test_error_unknown_udt_field_type() -> None:
    line, message = _error_line(f"{KEYSPACE_LINE}\nCREATE TYPE ks.u (a int, b frozen<nosuch>);\n")
    assert line == 2
    assert "nosuch" in message


def test_error_unknown_type_in_alter_add_names_the_alter_line() -> None:
    text = f"""{KEYSPACE_LINE}
CREATE TABLE ks.t (
    id int PRIMARY KEY,
    v int
) WITH ID = {TABLE_ID};
ALTER TABLE ks.t DROP v USING TIMESTAMP 1;
ALTER TABLE ks.t ADD v frozen<nosuch>;
"""
    line, message = _error_line(text)
    assert "nosuch" in message
    assert line == 7


def test_error_undeclared_primary_key_column() -> None:
    text = f"{KEYSPACE_LINE}\n\n\nCREATE TABLE ks.t (\n    id int,\n    PRIMARY KEY ((id, nope))\n) WITH ID = {TABLE_ID};\n"
    line, message = _error_line(text)
    assert line == 4
    assert "nope" in message


def test_error_undeclared_clustering_column() -> None:
    text = f"{KEYSPACE_LINE}\nCREATE TABLE ks.t (\n    id int,\n    PRIMARY KEY (id, ck)\n) WITH ID = {TABLE_ID};\n"
    line, message = _error_line(text)
    assert line == 2
    assert "ck" in message


def test_error_compact_storage() -> None:
    text = f"{KEYSPACE_LINE}\nCREATE TABLE ks.t (\n    key blob PRIMARY KEY,\n    value blob\n) WITH COMPACT STORAGE\n    AND ID = {TABLE_ID};\n"
    line, message = _error_line(text)
    assert line == 2
    assert "COMPACT STORAGE" in message


def test_error_alter_before_create() -> None:
    text = f"{KEYSPACE_LINE}\n\nALTER TABLE ks.t DROP v USING TIMESTAMP 1;\nCREATE TABLE ks.t (id int PRIMARY KEY, v int) WITH ID = {TABLE_ID};\n"
    line, message = _error_line(text)
    assert line == 3
    assert "before its CREATE TABLE" in message


def test_error_drop_without_using_timestamp() -> None:
    text = f"{KEYSPACE_LINE}\nCREATE TABLE ks.t (id int PRIMARY KEY, v int) WITH ID = {TABLE_ID};\n\nALTER TABLE ks.t DROP v;\n"
    line, message = _error_line(text)
    assert line == 4
    assert "USING TIMESTAMP" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (f"{KEYSPACE_LINE}\nCREATE TABLE ks.t (id int PRIMARY KEY) WITH ID = 'not-a-uuid';\n", 2),
        (f"{KEYSPACE_LINE}\nCREATE TABLE ks.t (id int PRIMARY KEY, id int) WITH ID = {TABLE_ID};\n", 2),
        (f"{KEYSPACE_LINE}\nCREATE TABLE ks.t (id int) WITH ID = {TABLE_ID};\n", 2),
        (f"{KEYSPACE_LINE}\nINSERT INTO ks.t (id) VALUES (1);\n", 2),
        (f"{KEYSPACE_LINE}\nCREATE TABLE ks.t (id int PRIMARY KEY) WITH ID = {TABLE_ID}\n", 2),
        (f"{KEYSPACE_LINE}\n\nCREATE TABLE ks.t (id int PRIMARY KEY) WITH ID = {TABLE_ID} AND ~ = 1;\n", 3),
        (
            f"{KEYSPACE_LINE}\nCREATE TABLE ks.a (id int PRIMARY KEY) WITH ID = {TABLE_ID};\n"
            f"CREATE TABLE ks.b (id int PRIMARY KEY) WITH ID = {TABLE_ID};\n",
            3,
        ),
        (
            f"{KEYSPACE_LINE}\nCREATE TABLE ks.t (id int, ck int, PRIMARY KEY (id, ck)) WITH ID = {TABLE_ID}\n"
            "    AND CLUSTERING ORDER BY (ck SIDEWAYS);\n",
            3,
        ),
        (
            f"{KEYSPACE_LINE}\nCREATE TABLE ks.t (id int PRIMARY KEY) WITH ID = {TABLE_ID};\nALTER TABLE ks.t DROP id USING TIMESTAMP soon;\n",
            3,
        ),
    ],
)
def test_other_errors_name_the_line(text: str, line: int) -> None:
    assert _error_line(text)[0] == line


def test_load_schema_reads_a_file_and_names_it_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "schema.cql"
    good.write_text(DESCRIBE_41, encoding="utf-8")
    assert load_schema(good) == parse_schema(DESCRIBE_41)
    bad = tmp_path / "bad.cql"
    bad.write_text(f"{KEYSPACE_LINE}\nCREATE TABLE ks.t (id int PRIMARY KEY);\n", encoding="utf-8")
    with pytest.raises(SchemaParseError, match=r"bad\.cql, line 2"):
        load_schema(bad)
    with pytest.raises(SchemaParseError, match="cannot read"):
        load_schema(tmp_path / "missing.cql")


# --------------------------------------------------------------------------------------------
# Printer round trip


@pytest.mark.parametrize(
    "text",
    [DESCRIBE_41, DESCRIBE_50, MISSING_COMMAS, THREE_X_DROP],
    ids=["describe_41", "describe_50", "missing_commas", "3x_drop"],
)
def test_printer_round_trip_of_examples(text: str) -> None:
    schema = parse_schema(text)
    printed = schema_to_cql(schema)
    assert parse_schema(printed) == schema
    # Printing is stable.
    assert schema_to_cql(parse_schema(printed)) == printed


def test_printer_layout_of_the_audit_table() -> None:
    printed = schema_to_cql(parse_schema(DESCRIBE_41))
    assert (
        "CREATE TABLE shop.audit (\n    id timeuuid PRIMARY KEY,\n    actor text,\n    msg text,\n    old_flag boolean\n) WITH ID = 1b6e0f50-7a1e-11ee-b5e3-8f1d2c3b4a59\n"
        in printed
    )
    assert "ALTER TABLE shop.audit DROP old_flag USING TIMESTAMP 1698900000123000;" in printed
    assert (
        'ALTER TABLE shop."UserEvents" DROP notes USING TIMESTAMP 1699012345678000;\nALTER TABLE shop."UserEvents" ADD notes text;'
        in printed
    )
    assert "    AND CLUSTERING ORDER BY (event_time DESC, seq ASC)\n" in printed


@pytest.mark.parametrize(
    "comment",
    [
        "",
        "plain",
        "it's",
        'say "hi"',
        "two\nlines",
        "123",
        "-1.5",
        "1.0E-4",
        '{"owner": "team-a"}',
        "{}",
        "; DROP",
    ],
)
def test_printer_round_trip_of_comments(comment: str) -> None:
    table = Table(
        "ks",
        "t",
        TABLE_ID,
        [Column("id", INT, ColumnKind.PARTITION_KEY)],
        {},
        {"comment": quote_string(comment)},
    )
    schema = Schema(
        {"ks": Keyspace("ks", {"class": "SimpleStrategy", "replication_factor": "1"}, True, {}, {"t": table})}
    )
    assert parse_schema(schema_to_cql(schema)) == schema


# Names that stress quoting: reserved words, unreserved keywords, case, quotes, unicode and
# characters meaningful to the CQL lexer.
_NAME_POOL = [
    "select", "from", "static", "masked", "check", "primary", "key", "frozen", "list", "map", "set",
    "tuple", "vector", "with", "and", "id", "table", "type", "using", "timestamp", "clustering",
    "order", "compact", "storage", "drop", "add", "alter", "create", "use", "if", "asc", "desc",
    "nan", "infinity", "int", "text", "varchar", "Foo", "MixedCase", "a b", 'we"ird', '"', "it's",
    "ünïcödé", "日本語", "-- dash", "/* c */", "$$x$$", "x;y", "a.b", "0day", "_x", "a >b", "x , y",
    "name\n", "tab\tbed",
]  # fmt: skip
_LOWER_START = "abcdefghijklmnopqrstuvwxyz"
_NAMES = st.one_of(
    st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(_LOWER_START),
        st.text(alphabet=_LOWER_START + "0123456789_", max_size=6),
    ),
    st.sampled_from(_NAME_POOL),
    st.text(min_size=1, max_size=6),
)
# A UDT cannot be named after a native type (Cassandra rejects it); ``static``, ``masked``
# and ``check`` as bare type names would make ``col static`` ambiguous.
_UDT_NAMES = _NAMES.filter(
    lambda n: n not in NATIVE_TYPES and n not in ("varchar", "static", "masked", "check")
)
_LEAVES = st.sampled_from(sorted(NATIVE_TYPES - {"counter", "empty"})).map(NativeType)
_NESTED_KINDS = st.sampled_from(["leaf", "leaf", "udt", "list", "set", "map", "tuple", "vector"])
_TOP_KINDS = st.sampled_from(["nested", "nested", "list", "set", "map", "udt"])


def _draw_nested_type(draw: st.DrawFn, udts: list[UserType], depth: int = 0) -> CqlType:
    """A type as it appears nested (frozen); drawn directly, which is much faster than
    building a recursive strategy per column."""
    kind = draw(_NESTED_KINDS) if depth < 3 else "leaf"
    if kind == "udt" and udts:
        return draw(st.sampled_from(udts)).freeze()
    if kind == "list":
        return ListType(_draw_nested_type(draw, udts, depth + 1), True)
    if kind == "set":
        return SetType(_draw_nested_type(draw, udts, depth + 1), True)
    if kind == "map":
        return MapType(
            _draw_nested_type(draw, udts, depth + 1), _draw_nested_type(draw, udts, depth + 1), True
        )
    if kind == "tuple":
        size = draw(st.integers(1, 3))
        return TupleType(tuple(_draw_nested_type(draw, udts, depth + 1) for _ in range(size)))
    if kind == "vector":
        return VectorType(_draw_nested_type(draw, udts, depth + 1), draw(st.integers(1, 4)))
    return draw(_LEAVES)


def _draw_column_type(draw: st.DrawFn, udts: list[UserType]) -> CqlType:
    """A top-level column type: additionally non-frozen collections and UDTs."""
    kind = draw(_TOP_KINDS)
    if kind == "list":
        return ListType(_draw_nested_type(draw, udts, 1), False)
    if kind == "set":
        return SetType(_draw_nested_type(draw, udts, 1), False)
    if kind == "map":
        return MapType(_draw_nested_type(draw, udts, 1), _draw_nested_type(draw, udts, 1), False)
    if kind == "udt" and udts:
        return draw(st.sampled_from(udts))
    return _draw_nested_type(draw, udts)


@st.composite
def _tables(draw: st.DrawFn, keyspace: str, name: str, table_id: uuid.UUID, udts: list[UserType]) -> Table:
    names = draw(st.lists(_NAMES, min_size=1, max_size=9, unique=True))
    n_pk = draw(st.integers(1, min(2, len(names))))
    n_ck = draw(st.integers(0, min(2, len(names) - n_pk)))
    pk, ck, rest = names[:n_pk], names[n_pk : n_pk + n_ck], names[n_pk + n_ck :]
    n_live = draw(st.integers(0, len(rest)))
    live, dropped_only = rest[:n_live], rest[n_live:]
    columns = [
        Column(n, _draw_nested_type(draw, udts), ColumnKind.PARTITION_KEY, i) for i, n in enumerate(pk)
    ]
    columns += [
        Column(n, _draw_nested_type(draw, udts), ColumnKind.CLUSTERING, i, draw(st.booleans()))
        for i, n in enumerate(ck)
    ]
    for n in live:
        kind = ColumnKind.STATIC if ck and draw(st.booleans()) else ColumnKind.REGULAR
        columns.append(Column(n, _draw_column_type(draw, udts), kind))
    readded = [n for n in live if draw(st.booleans())] if live else []
    dropped = {}
    for n in dropped_only + readded:
        kind = ColumnKind.STATIC if ck and draw(st.booleans()) else ColumnKind.REGULAR
        dropped[n] = DroppedColumn(n, _draw_column_type(draw, udts), draw(st.integers(0, 2**62)), kind)
    options = {"cdc": draw(st.sampled_from(["true", "false"]))}
    if draw(st.booleans()):
        # Table.options holds CQL literals, as DESCRIBE prints them.
        options["comment"] = quote_string(
            draw(st.text(max_size=12) | st.sampled_from(["it's", "{}", '{"k": 1}', "1.5", "a\nb"]))
        )
    return Table(keyspace, name, table_id, columns, dropped, options)


@st.composite
def _schemas(draw: st.DrawFn) -> Schema:
    ks_names = draw(st.lists(_NAMES, min_size=1, max_size=2, unique=True))
    ids = iter(draw(st.lists(st.uuids(), min_size=6, max_size=6, unique=True)))
    schema = Schema()
    for ks_name in ks_names:
        if draw(st.booleans()):
            replication = {"class": "SimpleStrategy", "replication_factor": str(draw(st.integers(1, 5)))}
        else:
            dcs = draw(st.lists(_NAMES, min_size=1, max_size=2, unique=True))
            replication = {"class": "NetworkTopologyStrategy", **{dc: "3" for dc in dcs}}
        ks = Keyspace(ks_name, replication, draw(st.booleans()))
        for udt_name in draw(st.lists(_UDT_NAMES, max_size=2, unique=True)):
            field_names = draw(st.lists(_NAMES, min_size=1, max_size=3, unique=True))
            earlier = list(ks.types.values())
            field_types = tuple(_draw_nested_type(draw, earlier) for _ in field_names)
            ks.types[udt_name] = UserType(ks_name, udt_name, tuple(field_names), field_types)
        for table_name in draw(st.lists(_NAMES, max_size=2, unique=True)):
            ks.tables[table_name] = draw(_tables(ks_name, table_name, next(ids), list(ks.types.values())))
        schema.keyspaces[ks_name] = ks
    return schema


def _comparable(schema: Schema) -> dict[str, Any]:
    """The schema with column lists keyed by name (their order carries no meaning)."""
    return {
        ks.name: (
            ks.replication,
            ks.durable_writes,
            ks.types,
            {
                t.name: (t.id, len(t.columns), {c.name: c for c in t.columns}, t.dropped, t.options)
                for t in ks.tables.values()
            },
        )
        for ks in schema.keyspaces.values()
    }


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # One minimal counterexample is enough; shrinking several distinct ones is slow.
    report_multiple_bugs=False,
)
@given(_schemas())
def test_printer_round_trip_of_generated_schemas(schema: Schema) -> None:
    printed = schema_to_cql(schema)
    assert _comparable(parse_schema(printed)) == _comparable(schema)
