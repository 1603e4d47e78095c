"""Change batches: Arrow layout and lossless round trips."""

from __future__ import annotations

import decimal
import ipaddress
import uuid
from pathlib import Path

import pyarrow as pa

from cdc_platform.changes.arrow import ChangeBatch, arrow_schema
from cdc_platform.changes.records import CellChange, ChangeKind, ClusteringBound, RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.schema.cql import parse_schema
from cdc_platform.schema.values import EMPTY, Duration, InvalidValue

SCHEMA = """
CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
CREATE TYPE ks.pt (x double, y double, "Label" text);
CREATE TABLE ks.everything (
    k1 uuid,
    k2 text,
    c1 timestamp,
    c2 int,
    st text static,
    a ascii,
    b blob,
    bo boolean,
    ti tinyint,
    si smallint,
    i int,
    bi bigint,
    vi varint,
    f float,
    d double,
    de decimal,
    tu timeuuid,
    da date,
    tm time,
    du duration,
    ip inet,
    fl frozen<list<int>>,
    fm frozen<map<text, frozen<set<int>>>>,
    tp frozen<tuple<int, text, boolean>>,
    fu frozen<pt>,
    ve vector<float, 3>,
    l list<text>,
    s set<int>,
    m map<text, date>,
    u pt,
    PRIMARY KEY ((k1, k2), c1, c2)
) WITH ID = 7e3b0c8e-1a2b-11ef-9f00-000000000001
    AND CLUSTERING ORDER BY (c1 DESC, c2 ASC);
"""

TS = 1_767_225_600_000_000


def _table():  # type: ignore[no-untyped-def]
    return parse_schema(SCHEMA).table("ks.everything")


def _values() -> dict[str, object]:
    return {
        "a": "ascii",
        "b": b"\x00\xff",
        "bo": True,
        "ti": -128,
        "si": 32767,
        "i": -(2**31),
        "bi": 2**63 - 1,
        "vi": -(10**40),
        "f": 1.5,
        "d": -0.0,
        "de": decimal.Decimal("-1.23E-12"),
        "tu": uuid.UUID("6bddc89a-5644-11e4-97fc-56847afe9799"),
        "da": -719528,
        "tm": 86_399_999_999_999,
        "du": Duration(14, 3, 3_723_004_005_006),
        "ip": ipaddress.ip_address("2001:db8::ff00:42:8329"),
        "fl": [3, 1, 2],
        "fm": [("a", [1, 2]), ("b", [])],
        "tp": (1, None, True),
        "fu": {"x": 1.0, "y": 2.0, "Label": None},
        "ve": [1.0, 2.5, -3.0],
        "l": ["x", "y"],
        "s": [1, 2, 3],
        "m": [("d1", 0), ("d2", 20000)],
        "u": {"x": 0.5, "y": None, "Label": "p"},
    }


def test_round_trip_of_every_type_and_every_kind(tmp_path: Path) -> None:
    table = _table()
    key = {"k1": uuid.UUID(int=5), "k2": "part"}
    ck = {"c1": -62135596800000, "c2": 7}
    updates = [
        UpdateBuilder(table, key, now=1_767_225_600)
        .insert(ck, _values(), TS, ttl=3600)
        .update(None, {"st": "static"}, TS)
        .build(),
        UpdateBuilder(table, key).delete_row(ck, TS + 1).build(),
        UpdateBuilder(table, key)
        .delete_columns(ck, ["i", "l"], TS + 2)
        .remove_elements(ck, "s", [2], TS + 2)
        .build(),
        UpdateBuilder(table, key).delete_partition(TS + 3).build(),
        UpdateBuilder(table, key).delete_range({"c1": 5}, {"c1": 1}, TS + 4, end_inclusive=False).build(),
    ]
    changes = [
        c
        for i, u in enumerate(updates)
        for c in changes_of_update(u, segment_id=9, position=100 + i, node="n1")
    ]
    assert {c.kind for c in changes} == set(ChangeKind)
    batch = ChangeBatch.from_changes(table, changes)
    assert batch.data.schema == arrow_schema(table)
    assert batch.data.column("_cdc_raw").null_count == len(batch)
    assert batch.to_changes() == changes
    path = tmp_path / "batch.parquet"
    batch.write_parquet(path)
    assert ChangeBatch.read_parquet(table, path).to_changes() == changes


def test_types_in_arrow() -> None:
    schema = arrow_schema(_table())
    assert schema.field("k1").type == pa.string()
    assert schema.field("c1").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("da").type.field("value").type == pa.date32()
    assert schema.field("du").type.field("value").type == pa.struct(
        [pa.field("months", pa.int32()), pa.field("days", pa.int32()), pa.field("nanoseconds", pa.int64())]
    )
    assert schema.field("ve").type.field("value").type == pa.list_(pa.float32(), 3)
    assert schema.field("l").type.field("cells").type.value_type.field("path").type == pa.string()
    assert schema.field("u").type.field("fields").type.field("Label").type.field("value").type == pa.string()
    assert schema.metadata[b"cdc.table_id"] == b"7e3b0c8e-1a2b-11ef-9f00-000000000001"


def test_unrepresentable_values_are_kept_in_cdc_raw() -> None:
    table = _table()
    change = RowChange(
        ChangeKind.ROW,
        "ks",
        "everything",
        {"k1": uuid.UUID(int=1), "k2": "x"},
        {"c1": 0, "c2": 1},
        (
            CellChange("i", EMPTY, 5),
            CellChange("a", InvalidValue(b"\xff", "ascii value has a non-ASCII byte at 0"), 5),
            CellChange("dropped_col", "v", 6),
            CellChange("bi", 42, 7),
        ),
    )
    batch = ChangeBatch.from_changes(table, [change])
    raw = batch.data.column("_cdc_raw").to_pylist()[0]
    assert sorted((r["column"], r["raw"]) for r in raw) == [("a", b"\xff"), ("dropped_col", b""), ("i", b"")]
    raw = sorted(raw, key=lambda r: r["column"])
    assert "non-ASCII" in raw[0]["reason"]
    (back,) = batch.to_changes()
    # Nothing is lost: the raw values come back on their cells; an unknown column's cell keeps its bytes.
    restored = {c.column: c.value for c in back.cells}
    assert restored["i"] is EMPTY
    assert restored["a"] == InvalidValue(b"\xff", "ascii value has a non-ASCII byte at 0")
    assert restored["bi"] == 42
    assert isinstance(restored["dropped_col"], InvalidValue)
    assert batch.data.column("bi").to_pylist()[0]["value"] == 42


def test_range_bounds_keep_prefix_and_inclusiveness() -> None:
    table = _table()
    change = RowChange(
        ChangeKind.RANGE_DELETE,
        "ks",
        "everything",
        {"k1": uuid.UUID(int=1), "k2": "x"},
        deletion_timestamp=5,
        deletion_time=6,
        range_start=ClusteringBound({}, True),
        range_end=ClusteringBound({"c1": 10}, False),
    )
    (back,) = ChangeBatch.from_changes(table, [change]).to_changes()
    assert back.range_start == ClusteringBound({}, True)
    assert back.range_end == ClusteringBound({"c1": 10}, False)


# --------------------------------------------------------------------------------------------
# Property: decoded random mutations → change records → Arrow → the same change records.

import struct  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cdc_platform.commitlog.model import Mutation  # noqa: E402
from cdc_platform_tests import strategies as cst  # noqa: E402


@st.composite
def _table_and_updates(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    table = draw(cst.tables())
    updates = draw(st.lists(cst.partition_updates(table), min_size=1, max_size=4))
    return table, updates


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_table_and_updates())
def test_records_survive_arrow_and_parquet(data, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    table, updates = data
    changes = [
        c
        for i, u in enumerate(updates)
        for c in changes_of_update(
            cst.expected_decoded(Mutation((u,))).updates[0], segment_id=3, position=100 + i, node="n"
        )
    ]
    batch = ChangeBatch.from_changes(table, changes)
    # Cells of columns no longer in the table (dropped, written after the drop) are kept in
    # _cdc_raw for the record, as raw bytes: compare everything else exactly.
    strays = [c for ch in changes for c in ch.cells if c.column not in table.by_name]
    raw = [r for rows in batch.data.column("_cdc_raw").to_pylist() if rows for r in rows]
    assert sorted(
        r["column"] for r in raw if r["timestamp"] is not None and r["column"] not in table.by_name
    ) == sorted(c.column for c in strays)
    assert _bits(_known(table, batch.to_changes())) == _bits(_known(table, changes))
    path = tmp_path_factory.mktemp("pq") / "b.parquet"
    batch.write_parquet(path)
    assert _bits(_known(table, ChangeBatch.read_parquet(table, path).to_changes())) == _bits(
        _known(table, changes)
    )


def _known(table, changes):  # type: ignore[no-untyped-def]
    import dataclasses

    return [
        dataclasses.replace(c, cells=tuple(x for x in c.cells if x.column in table.by_name)) for c in changes
    ]


def _bits(obj: object) -> object:
    """A comparable form in which floats compare by bit pattern (NaN != NaN as objects)."""
    if isinstance(obj, float):
        return ("float", struct.pack(">d", obj))
    if isinstance(obj, dict):
        return tuple((_bits(k), _bits(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, tuple(_bits(x) for x in obj))
    if hasattr(obj, "__dataclass_fields__"):
        return (type(obj).__name__, tuple(_bits(getattr(obj, f)) for f in obj.__dataclass_fields__))
    return obj
