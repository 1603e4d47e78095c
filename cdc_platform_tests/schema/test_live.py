"""``system_schema`` rows → model: the same model as parsing the equivalent DESCRIBE text."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from cdc_platform.schema.cql import parse_schema, schema_to_cql
from cdc_platform.schema.live import schema_from_rows
from cdc_platform.schema.model import ColumnKind, Schema
from cdc_platform.schema.types import NativeType, TupleType, UserType
from cdc_platform_tests.schema.test_cql import DESCRIBE_41, DESCRIBE_50

Row = dict[str, Any]

AUDIT_ID = uuid.UUID("1b6e0f50-7a1e-11ee-b5e3-8f1d2c3b4a59")
EVENTS_ID = uuid.UUID("5a1c3940-7b2d-11ee-8c2a-1f3e5d7b9a01")


def _keyspace_row(name: str, cls: str, durable: bool = True, **options: str) -> Row:
    return {"keyspace_name": name, "durable_writes": durable, "replication": {"class": cls, **options}}


def _table_row(ks: str, name: str, table_id: uuid.UUID, cdc: bool | None, comment: str) -> Row:
    # The columns of system_schema.tables that a fetch returns, defaults as a 4.1 node stores them.
    return {
        "keyspace_name": ks,
        "table_name": name,
        "id": table_id,
        "flags": {"compound"},
        "cdc": cdc,
        "comment": comment,
        "additional_write_policy": "99p",
        "bloom_filter_fp_chance": 0.01,
        "caching": {"keys": "ALL", "rows_per_partition": "NONE"},
        "compaction": {
            "class": "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy",
            "max_threshold": "32",
            "min_threshold": "4",
        },
        "compression": {
            "chunk_length_in_kb": "16",
            "class": "org.apache.cassandra.io.compress.LZ4Compressor",
        },
        "crc_check_chance": 1.0,
        "default_time_to_live": 0,
        "extensions": {},
        "gc_grace_seconds": 864000,
        "max_index_interval": 2048,
        "memtable": None,
        "memtable_flush_period_in_ms": 0,
        "min_index_interval": 128,
        "read_repair": "BLOCKING",
        "speculative_retry": "99p",
    }


def _column_row(ks: str, table: str, name: str, kind: str, position: int, order: str, type_text: str) -> Row:
    return {
        "keyspace_name": ks,
        "table_name": table,
        "column_name": name,
        "column_name_bytes": name.encode("utf-8"),
        "kind": kind,
        "position": position,
        "clustering_order": order,
        "type": type_text,
    }


def _dropped_row(ks: str, table: str, name: str, when: Any, type_text: str, kind: str | None) -> Row:
    return {
        "keyspace_name": ks,
        "table_name": table,
        "column_name": name,
        "dropped_time": when,
        "type": type_text,
        "kind": kind,
    }


def _shop_rows(*, with_vector: bool = False) -> dict[str, list[Row]]:
    """The rows a 4.1 (or, with the vector column, 5.0) node holds for notes/describe.md §1."""
    columns = [
        _column_row("shop", "audit", "id", "partition_key", 0, "none", "timeuuid"),
        _column_row("shop", "audit", "actor", "regular", -1, "none", "text"),
        _column_row("shop", "audit", "msg", "regular", -1, "none", "text"),
        _column_row("shop", "UserEvents", "tenant_id", "partition_key", 0, "none", "uuid"),
        _column_row("shop", "UserEvents", "bucket", "partition_key", 1, "none", "int"),
        # A DESC clustering column stores its base type.
        _column_row("shop", "UserEvents", "event_time", "clustering", 0, "desc", "timestamp"),
        _column_row("shop", "UserEvents", "seq", "clustering", 1, "asc", "int"),
        _column_row("shop", "UserEvents", "tenant_name", "static", -1, "none", "text"),
        _column_row("shop", "UserEvents", "eventType", "regular", -1, "none", "text"),
        _column_row("shop", "UserEvents", "home", "regular", -1, "none", "frozen<address>"),
        _column_row("shop", "UserEvents", "payload", "regular", -1, "none", "blob"),
        _column_row("shop", "UserEvents", "attrs", "regular", -1, "none", "map<text, int>"),
        _column_row("shop", "UserEvents", "history", "regular", -1, "none", "list<frozen<address>>"),
        _column_row("shop", "UserEvents", "tags", "regular", -1, "none", "set<text>"),
        _column_row("shop", "UserEvents", "notes", "regular", -1, "none", "text"),
        # Columns of a materialized view share system_schema.columns; the view is not a table.
        _column_row("shop", "events_by_type", "eventType", "partition_key", 0, "none", "text"),
    ]
    if with_vector:
        columns.append(
            _column_row("shop", "UserEvents", "embedding", "regular", -1, "none", "vector<float, 3>")
        )
    return {
        "keyspaces": [_keyspace_row("shop", "org.apache.cassandra.locator.NetworkTopologyStrategy", dc1="3")],
        "tables": [
            _table_row("shop", "audit", AUDIT_ID, None, ""),
            _table_row("shop", "UserEvents", EVENTS_ID, True, 'Tenant\'s raw "event" feed'),
        ],
        "columns": columns,
        "dropped_columns": [
            # The driver returns dropped_time as a naive UTC datetime with ms precision.
            _dropped_row(
                "shop", "audit", "old_flag", dt.datetime(2023, 11, 2, 4, 40, 0, 123000), "boolean", "regular"
            ),
            _dropped_row(
                "shop", "UserEvents", "notes", dt.datetime(2023, 11, 3, 11, 52, 25, 678000), "text", "regular"
            ),
            # UDTs of dropped columns are stored expanded to tuples.
            _dropped_row(
                "shop",
                "UserEvents",
                "old_addr",
                dt.datetime(2023, 11, 3, 11, 53, 19, 1000),
                "frozen<tuple<text, text, int>>",
                "regular",
            ),
            # kind may be null in old rows: regular.
            _dropped_row(
                "shop", "UserEvents", "legacy_score", dt.datetime(2023, 11, 3, 11, 53, 20), "int", None
            ),
        ],
        "types": [
            {
                "keyspace_name": "shop",
                "type_name": "address",
                "field_names": ["street", "city", "zipCode"],
                "field_types": ["text", "text", "int"],
            }
        ],
    }


def _from_rows(rows: dict[str, list[Row]]) -> Schema:
    return schema_from_rows(
        rows["keyspaces"], rows["tables"], rows["columns"], rows["dropped_columns"], rows["types"]
    )


def _model(schema: Schema) -> dict[str, Any]:
    """What both sources carry: everything but the raw table options other than cdc and comment."""
    return {
        ks.name: (
            ks.replication,
            ks.durable_writes,
            ks.types,
            {
                t.name: (
                    t.id,
                    len(t.columns),
                    {c.name: c for c in t.columns},
                    t.dropped,
                    t.cdc,
                    t.option("comment") or "",
                )
                for t in ks.tables.values()
            },
        )
        for ks in schema.keyspaces.values()
    }


# --------------------------------------------------------------------------------------------


def test_rows_build_the_same_model_as_describe_41() -> None:
    assert _model(_from_rows(_shop_rows())) == _model(parse_schema(DESCRIBE_41))


def test_rows_build_the_same_model_as_describe_50() -> None:
    rows = _shop_rows(with_vector=True)
    # The 5.0 example of the notes describes only the UserEvents table.
    rows["tables"] = [r for r in rows["tables"] if r["table_name"] == "UserEvents"]
    assert _model(_from_rows(rows)) == _model(parse_schema(DESCRIBE_50))


def test_network_topology_strategy_class_is_shortened() -> None:
    ks = _from_rows(_shop_rows()).keyspaces["shop"]
    assert ks.replication == {"class": "NetworkTopologyStrategy", "dc1": "3"}


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        ("org.apache.cassandra.locator.SimpleStrategy", "SimpleStrategy"),
        ("org.apache.cassandra.locator.LocalStrategy", "LocalStrategy"),
        ("NetworkTopologyStrategy", "NetworkTopologyStrategy"),
        # Only Cassandra's own locator package is shortened, as DESCRIBE does.
        ("com.example.locator.RackAwareStrategy", "com.example.locator.RackAwareStrategy"),
    ],
)
def test_replication_class_names(cls: str, expected: str) -> None:
    schema = schema_from_rows([_keyspace_row("ks", cls, replication_factor="2")], [], [], [], [])
    assert schema.keyspaces["ks"].replication == {"class": expected, "replication_factor": "2"}


def test_durable_writes_false() -> None:
    schema = schema_from_rows([_keyspace_row("ks", "SimpleStrategy", durable=False)], [], [], [], [])
    assert schema.keyspaces["ks"].durable_writes is False


def test_dropped_time_ms_becomes_micros() -> None:
    table = _from_rows(_shop_rows()).table("shop.UserEvents")
    assert table.dropped["notes"].dropped_time == 1699012345678000
    assert table.dropped["old_addr"].dropped_time == 1699012399001000
    assert table.dropped["old_addr"].type == TupleType(
        (NativeType("text"), NativeType("text"), NativeType("int"))
    )
    assert table.dropped["legacy_score"].kind is ColumnKind.REGULAR
    assert _from_rows(_shop_rows()).table("shop.audit").dropped["old_flag"].dropped_time == 1698900000123000


@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(2023, 11, 2, 4, 40, 0, 123000),
        dt.datetime(2023, 11, 2, 6, 40, 0, 123000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        1698900000123,
    ],
    ids=["naive_utc", "aware", "int_ms"],
)
def test_dropped_time_forms(when: Any) -> None:
    rows = _shop_rows()
    rows["dropped_columns"][0] = _dropped_row("shop", "audit", "old_flag", when, "boolean", "static")
    dropped = _from_rows(rows).table("shop.audit").dropped["old_flag"]
    assert dropped.dropped_time == 1698900000123000
    assert dropped.kind is ColumnKind.STATIC
    assert dropped.type == NativeType("boolean")
    assert dropped.type_known is True


def test_dropped_time_before_the_epoch() -> None:
    rows = _shop_rows()
    rows["dropped_columns"][0] = _dropped_row(
        "shop", "audit", "old_flag", dt.datetime(1969, 12, 31, 23, 59, 59, 999000), "boolean", "regular"
    )
    assert _from_rows(rows).table("shop.audit").dropped["old_flag"].dropped_time == -1000


def test_cdc_null_reads_as_false_and_view_columns_are_ignored() -> None:
    schema = _from_rows(_shop_rows())
    assert schema.table("shop.audit").cdc is False
    assert schema.table("shop.UserEvents").cdc is True
    assert sorted(schema.keyspaces["shop"].tables) == ["UserEvents", "audit"]


def test_positions_and_clustering_order() -> None:
    table = _from_rows(_shop_rows()).table("shop.UserEvents")
    assert [(c.name, c.position) for c in table.partition_key] == [("tenant_id", 0), ("bucket", 1)]
    assert [(c.name, c.position, c.reversed) for c in table.clustering] == [
        ("event_time", 0, True),
        ("seq", 1, False),
    ]
    assert table.column("notes").position == 0
    assert table.column("tenant_name").kind is ColumnKind.STATIC


def test_pulled_schema_prints_and_parses_back() -> None:
    schema = _from_rows(_shop_rows(with_vector=True))
    assert _model(parse_schema(schema_to_cql(schema))) == _model(schema)


def _type_row(name: str, fields: dict[str, str]) -> Row:
    return {
        "keyspace_name": "ks",
        "type_name": name,
        "field_names": list(fields),
        "field_types": list(fields.values()),
    }


def _udts_from_rows(types: list[Row]) -> dict[str, UserType]:
    keyspaces = [_keyspace_row("ks", "org.apache.cassandra.locator.SimpleStrategy", replication_factor="1")]
    return schema_from_rows(keyspaces, [], [], [], types).keyspaces["ks"].types


def test_types_are_built_after_the_types_they_use() -> None:
    rows = [
        _type_row(
            "person", {"name": "text", "home": "frozen<address>", "past": "frozen<list<frozen<address>>>"}
        ),
        _type_row("address", {"street": "text", "Zip": "int"}),
    ]
    types = _udts_from_rows(rows)
    address = UserType("ks", "address", ("street", "Zip"), (NativeType("text"), NativeType("int")))
    assert types["address"] == address
    assert types["person"].field_types[1] == address.freeze()


def test_type_names_contained_in_other_type_strings() -> None:
    # ``info`` uses ``contact``; ``contact`` uses ``contact_info``, whose name contains "info"
    # although ``contact`` does not use ``info``.
    rows = [
        _type_row("info", {"primary": "frozen<contact>"}),
        _type_row("contact", {"details": "frozen<contact_info>"}),
        _type_row("contact_info", {"phone": "text"}),
    ]
    types = _udts_from_rows(rows)
    described = parse_schema(
        "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};\n"
        "CREATE TYPE ks.contact_info (phone text);\n"
        "CREATE TYPE ks.contact (details frozen<contact_info>);\n"
        'CREATE TYPE ks.info ("primary" frozen<contact>);\n'
    )
    assert types == described.keyspaces["ks"].types
