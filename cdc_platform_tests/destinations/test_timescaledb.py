"""TimescaleDB destination: change history (and optional current state) on a real server.

No package here provides the timescaledb extension, so the embedded PostgreSQL runs the
fallback (native monthly range partitioning). The extension path is checked twice without
the extension: the exact SQL text it generates, and a run of that SQL against stub functions
declared with TimescaleDB's documented signatures (all but the compression ``ALTER TABLE …
SET (timescaledb.compress …)``, which plain PostgreSQL rejects and which is checked as text).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from cdc_platform.changes.arrow import ChangeBatch
from cdc_platform.changes.identity import change_id
from cdc_platform.changes.merge import TableModel, canonical, partition_bytes
from cdc_platform.changes.records import ChangeKind, RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder, timeuuid_for
from cdc_platform.destinations.base import DestinationError
from cdc_platform.destinations.postgres.copy import ColumnCopy
from cdc_platform.destinations.timescaledb.columnar import history_columns, timed_rows
from cdc_platform.destinations.timescaledb.sink import (
    CurrentStateDisabledError,
    HistoryLayout,
    HypertableOptions,
    TimescaleDestination,
    create_table_statement,
    full_cells,
    hypertable_statements,
    write_time,
)
from cdc_platform.pipeline import decode_range, load_changes
from cdc_platform.schema.cql import parse_schema
from cdc_platform.workload import ShopWorkload, write_cluster
from cdc_platform_tests.destinations.test_columnar import ALL_TYPES, _inserts
from cdc_platform_tests.workloads import NOW, PLAIN, TABLE, plain_workloads, workloads

SINK_LOG = "cdc_platform.destinations.timescaledb.sink"
HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture()
def ts(postgres_url: str, schema_prefix: str) -> Iterator[TimescaleDestination]:
    dest = TimescaleDestination(postgres_url, schema_prefix=schema_prefix)
    yield dest
    dest.close()


@pytest.fixture()
def ts_state(postgres_url: str, schema_prefix: str) -> Iterator[TimescaleDestination]:
    dest = TimescaleDestination(postgres_url, schema_prefix=schema_prefix, current_state=True)
    yield dest
    dest.close()


def _us(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> int:
    """Microseconds since the epoch of a UTC date-time."""
    at = dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=dt.UTC)
    return (at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _greatest_timestamp(change: RowChange) -> int:
    stamps = [c.timestamp for c in change.cells] + [change.liveness_timestamp, change.deletion_timestamp]
    return max(s for s in stamps if s is not None)


def _provenance(changes: list[RowChange], node: str, segment: int) -> list[RowChange]:
    """The changes as one replica's commit log holds them: its node, segment id and positions."""
    return [
        dataclasses.replace(c, node=node, segment_id=segment, position=100 + 37 * i, entry_start=90 + 37 * i)
        for i, c in enumerate(changes)
    ]


def _content(change: RowChange) -> str:
    """The change without provenance, as comparable text (independent of ``change_id``)."""
    return repr(dataclasses.replace(change, node=None, segment_id=None, position=None, entry_start=None))


def _batches(changes: list[RowChange], rng: random.Random) -> list[list[RowChange]]:
    """Random order, random replays of some changes, random batch boundaries."""
    shuffled = changes + rng.sample(changes, k=rng.randint(0, len(changes)))
    rng.shuffle(shuffled)
    out: list[list[RowChange]] = []
    i = 0
    while i < len(shuffled):
        n = rng.randint(1, 12)
        out.append(shuffled[i : i + n])
        i += n
    return out


def _one(changes: Any) -> RowChange:
    (change,) = list(changes)
    return change


def _rows(conn: psycopg.Connection[Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()


# --------------------------------------------------------------------------------------------
# Change ids and write times (pure)


def test_change_ids_are_stable() -> None:
    """Stored histories deduplicate on these ids: a new release must compute the same ones."""
    (change,) = changes_of_update(
        UpdateBuilder(TABLE, {"k": 1}, now=NOW)
        .insert({"c1": 1, "c2": "a"}, {"v": "x", "tags": ["p", "q"]}, 10)
        .build()
    )
    (ranged,) = changes_of_update(
        UpdateBuilder(TABLE, {"k": 1}, now=NOW).delete_range({"c1": 0}, {"c1": 1}, 12).build()
    )
    assert str(change_id(TABLE, change)) == "5f1b2142-83ee-5bcb-9fe5-9df8b6e12d65"
    assert str(change_id(TABLE, ranged)) == "330d105d-641a-538f-afa0-b0c1ad84f41a"


def test_change_id_depends_on_content_only() -> None:
    change = _one(
        changes_of_update(
            UpdateBuilder(TABLE, {"k": 1}, now=NOW)
            .insert({"c1": 1, "c2": "a"}, {"v": "x", "tags": ["p", "q"]}, 10)
            .build(),
            segment_id=7,
            position=4096,
            node="n1",
        )
    )
    replica = dataclasses.replace(change, node="n3", segment_id=99, position=12, entry_start=3)
    reordered = dataclasses.replace(change, cells=tuple(reversed(change.cells)))
    assert change_id(TABLE, change) == change_id(TABLE, replica) == change_id(TABLE, reordered)
    later = dataclasses.replace(change, liveness_timestamp=11)
    other_key = dataclasses.replace(change, partition_key={"k": 2})
    other_cell = dataclasses.replace(change, cells=change.cells[:-1])
    ids = {change_id(TABLE, c) for c in (change, later, other_key, other_cell)}
    assert len(ids) == 4
    # The collection overwrite's deletion is at 9, the values at 10: the change was written at 10.
    assert write_time(change) == 10
    deletion = _one(changes_of_update(UpdateBuilder(TABLE, {"k": 1}, now=NOW).delete_partition(12).build()))
    assert write_time(deletion) == 12
    # A BATCH of updates to one row with their own USING TIMESTAMP: one change, cells of both.
    for v_ts, n_ts in ((30, 25), (25, 30)):
        merged = _one(
            changes_of_update(
                UpdateBuilder(TABLE, {"k": 1}, now=NOW)
                .update({"c1": 1, "c2": "a"}, {"v": "x"}, v_ts)
                .update({"c1": 1, "c2": "a"}, {"n": 1}, n_ts)
                .build()
            )
        )
        assert {c.timestamp for c in merged.cells} == {25, 30}
        assert write_time(merged) == 30


# --------------------------------------------------------------------------------------------
# Fallback partitioning


def test_without_the_extension_history_is_partitioned_by_month_with_one_warning(
    ts: TimescaleDestination, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=SINK_LOG)
    changes = ts.ensure_table(TABLE)
    ts.ensure_table(PLAIN)
    ts.apply(
        PLAIN, list(changes_of_update(UpdateBuilder(PLAIN, {"id": 1}).insert({}, {"name": "a"}, 5).build()))
    )
    layout = ts.history_layout(TABLE)
    assert f"created table {layout.schema}.t$history (range-partitioned by month on _cdc_time)" in changes
    warnings = [r for r in caplog.records if r.name == SINK_LOG and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "timescaledb extension is not installed" in message
    assert "native PostgreSQL range partitioning by month" in message
    with psycopg.connect(postgres_url) as conn:
        strategy = _rows(
            conn,
            "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
            "WHERE p.partrelid = %s::regclass",
            f'"{layout.schema}"."t$history"',
        )
        assert strategy == [("r", "_cdc_time")]
        unique = _rows(
            conn,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'u'",
            f'"{layout.schema}"."t$history"',
        )
        assert unique == [("UNIQUE (_cdc_time, _cdc_change_id)",)]
        recorded = _rows(
            conn,
            'SELECT change FROM cdc_meta.schema_history WHERE destination = %s AND keyspace = %s AND "table" = %s '
            "ORDER BY id",
            "timescaledb",
            "ks",
            "t",
        )
        assert any("range-partitioned by month" in r[0] for r in recorded)


def test_rows_land_in_their_monthly_partitions_and_a_new_month_gets_one(
    ts: TimescaleDestination, postgres_url: str
) -> None:
    def at(key: int, micros: int) -> RowChange:
        return _one(
            changes_of_update(UpdateBuilder(PLAIN, {"id": key}).insert({}, {"name": "n"}, micros).build())
        )

    end_of_january = _us(2024, 1, 31, 23, 59, 59, 999_999)
    first = ts.apply(PLAIN, [at(1, _us(2024, 1, 15, 12)), at(2, end_of_january), at(3, _us(2024, 3, 1))])
    schema = ts.history_layout(PLAIN).schema
    assert sorted(n for n in first.notes if n.startswith("created partition")) == [
        f"created partition {schema}.plain$history_202401",
        f"created partition {schema}.plain$history_202403",
    ]
    second = ts.apply(PLAIN, [at(4, _us(2024, 2, 10)), at(5, _us(2024, 1, 2))])
    assert [n for n in second.notes if n.startswith("created partition")] == [
        f"created partition {schema}.plain$history_202402"
    ]
    placed = {r.partition_key["id"]: (r.partition, r.time) for r in ts.history(PLAIN)}
    assert placed == {
        1: (f'{schema}."plain$history_202401"', dt.datetime(2024, 1, 15, 12, tzinfo=dt.UTC)),
        2: (f'{schema}."plain$history_202401"', dt.datetime(2024, 1, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)),
        3: (f'{schema}."plain$history_202403"', dt.datetime(2024, 3, 1, tzinfo=dt.UTC)),
        4: (f'{schema}."plain$history_202402"', dt.datetime(2024, 2, 10, tzinfo=dt.UTC)),
        5: (f'{schema}."plain$history_202401"', dt.datetime(2024, 1, 2, tzinfo=dt.UTC)),
    }
    with psycopg.connect(postgres_url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        bounds = _rows(
            conn,
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 1",
            f'"{schema}"."plain$history"',
        )
    assert bounds == [
        ("plain$history_202401", "FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2024-02-01 00:00:00+00')"),
        ("plain$history_202402", "FOR VALUES FROM ('2024-02-01 00:00:00+00') TO ('2024-03-01 00:00:00+00')"),
        ("plain$history_202403", "FOR VALUES FROM ('2024-03-01 00:00:00+00') TO ('2024-04-01 00:00:00+00')"),
    ]


# --------------------------------------------------------------------------------------------
# Deduplication


@HYPOTHESIS
@given(changes=workloads(), seed=st.integers(0, 2**32))
def test_replays_reorderings_and_replica_copies_store_each_change_once(
    ts: TimescaleDestination, changes: list[RowChange], seed: int
) -> None:
    ts.ensure_table(TABLE)
    ts.truncate(TABLE)
    copies = _provenance(changes, "n1", 1) + _provenance(changes, "n2", 2) + _provenance(changes, "n3", 3)
    inserted = 0
    for batch in _batches(copies, random.Random(seed)):
        inserted += ts.apply(TABLE, batch, batch="b").rows_written
    for batch in _batches(changes, random.Random(seed + 1)):  # a rerun of everything
        inserted += ts.apply(TABLE, batch, batch="rerun").rows_written
    stored = ts.history(TABLE)
    distinct = {_content(c): c for c in changes}
    assert len(stored) == len(distinct) == inserted
    assert {r.change_id for r in stored} == {change_id(TABLE, c) for c in distinct.values()}
    by_id = {change_id(TABLE, c): c for c in distinct.values()}
    for row in stored:
        change = by_id[row.change_id]
        assert row.timestamp == _greatest_timestamp(change)
        assert row.time == dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=row.timestamp)
        assert (row.operation, row.kind) == (change.operation, change.kind.value)
        assert row.partition_key == change.partition_key
        assert row.node in {"n1", "n2", "n3"} and row.batch == "b"


def test_three_replicas_segments_load_each_change_once(ts: TimescaleDestination, tmp_path: Path) -> None:
    """Changes decoded from real segments of three nodes (own segment ids and positions)."""
    workload = ShopWorkload(seed=5)
    nodes = write_cluster(tmp_path, list(workload.mutations(300)), segment_size=64 * 1024)
    decoded = {
        node: [decode_range(p, workload.schema, node=node) for p in paths] for node, paths in nodes.items()
    }
    for node in sorted(decoded):
        for d in decoded[node]:
            load_changes([ts], workload.schema, d.changes, batch=f"{node}:{d.segment_id}")
    again = [
        r for d in decoded["node2"] for r in load_changes([ts], workload.schema, d.changes, batch="rerun")
    ]
    assert again and all(r.rows_written == 0 for r in again)
    for table in workload.schema.tables:
        per_node = {
            node: [c for d in ranges for c in d.changes.get(table.qualified_name, [])]
            for node, ranges in decoded.items()
        }
        ids = {node: {change_id(table, c) for c in changes} for node, changes in per_node.items()}
        assert len(set(map(frozenset, ids.values()))) == 1, "replicas disagree on content"
        stored = ts.history(table)
        assert len(stored) == len(ids["node1"]) > 0
        assert {r.change_id for r in stored} == ids["node1"]
        assert {r.node for r in stored} <= set(nodes)


# --------------------------------------------------------------------------------------------
# What a history row holds


def _cell(value: Any, timestamp: int, **extra: Any) -> dict[str, Any]:
    out = {"value": value, "timestamp": timestamp, "ttl": None, "local_deletion_time": None, "deleted": False}
    out.update(extra)
    return out


def _element(path: Any, value: Any, timestamp: int, **extra: Any) -> dict[str, Any]:
    return _cell(value, timestamp, path=path, collection_deletion=False, **extra)


def test_history_rows_hold_operation_keys_values_deletions_and_ranges(ts: TimescaleDestination) -> None:
    ck = {"c1": 1, "c2": "a"}

    def b(k: int = 1) -> UpdateBuilder:
        return UpdateBuilder(TABLE, {"k": k}, now=NOW)

    statements = [
        b().insert(ck, {"v": "x", "n": 3, "tags": ["q", "p"]}, 10),
        b().update(None, {"s": "st"}, 11),
        b().update(ck, {"n": None}, 12),
        b().delete_row(ck, 13),
        b(2).delete_partition(14),
        b().delete_range({"c1": 1}, {"c1": 3}, 15, start_inclusive=True, end_inclusive=False),
        b().insert({"c1": 2, "c2": "b"}, {"v": "t"}, 16, ttl=300),
        b().add_elements(ck, "attrs", [("p", 2)], 17),
        b().remove_elements(ck, "attrs", ["p"], 18),
        b().add_elements(ck, "items", [7], 19),
        b().update(ck, {"v": "nul\x00here"}, 20),
    ]
    changes = [
        c for s in statements for c in changes_of_update(s.build(), segment_id=5, position=64, node="n1")
    ]
    ts.apply(TABLE, changes, batch="seg-5")
    rows = {r.timestamp: r for r in ts.history(TABLE)}
    assert sorted(rows) == list(range(10, 21))
    assert all((r.node, r.segment_id, r.position, r.batch) == ("n1", 5, 64, "seg-5") for r in rows.values())

    insert = rows[10]
    assert (insert.operation, insert.kind) == ("upsert", "row")
    assert (insert.partition_key, insert.clustering) == ({"k": 1}, {"c1": 1, "c2": "a"})
    assert (insert.liveness_timestamp, insert.liveness_ttl, insert.deletion_timestamp) == (10, None, None)
    deletion_of_old_tags = _cell(
        None, 9, local_deletion_time=NOW, deleted=True, path=None, collection_deletion=True
    )
    assert insert.values == {
        "v": _cell("x", 10),
        "n": _cell(3, 10),
        "tags": [deletion_of_old_tags, _element("p", None, 10), _element("q", None, 10)],
    }
    assert insert.time == dt.datetime(1970, 1, 1, 0, 0, 0, 10, tzinfo=dt.UTC)

    static = rows[11]
    assert (static.operation, static.kind, static.clustering) == ("upsert", "static_row", {})
    assert static.values == {"s": _cell("st", 11)}

    cell_deletion = rows[12]
    assert cell_deletion.operation == "upsert"
    assert cell_deletion.values == {"n": _cell(None, 12, local_deletion_time=NOW, deleted=True)}

    row_deletion = rows[13]
    assert (row_deletion.operation, row_deletion.kind, row_deletion.values) == ("row_delete", "row", {})
    assert (row_deletion.deletion_timestamp, row_deletion.deletion_time) == (13, NOW)
    assert row_deletion.clustering == ck

    partition_deletion = rows[14]
    assert (partition_deletion.operation, partition_deletion.kind) == ("partition_delete", "partition_delete")
    assert (partition_deletion.partition_key, partition_deletion.clustering) == ({"k": 2}, {})
    assert (partition_deletion.deletion_timestamp, partition_deletion.deletion_time) == (14, NOW)

    # c1 is DESC: "c1 >= 1 AND c1 < 3" runs from 3 (exclusive) to 1 (inclusive) in clustering order.
    range_deletion = rows[15]
    assert (range_deletion.operation, range_deletion.kind, range_deletion.clustering) == (
        "range_delete",
        "range_delete",
        {},
    )
    assert range_deletion.range == {
        "start": {"clustering": {"c1": 3}, "inclusive": False},
        "end": {"clustering": {"c1": 1}, "inclusive": True},
    }
    assert (range_deletion.deletion_timestamp, range_deletion.deletion_time) == (15, NOW)

    ttl = rows[16]
    assert (ttl.liveness_timestamp, ttl.liveness_ttl, ttl.liveness_expires) == (16, 300, NOW + 300)
    assert ttl.values == {"v": _cell("t", 16, ttl=300, local_deletion_time=NOW + 300)}

    assert rows[17].values == {"attrs": [_element("p", 2, 17)]}
    assert rows[18].values == {"attrs": [_element("p", None, 18, local_deletion_time=NOW, deleted=True)]}
    (item,) = rows[19].values["items"]
    assert (item["value"], item["timestamp"]) == (7, 19)
    assert item["path"] == str(timeuuid_for(19, 0))  # the list cell id, as toJson prints a timeuuid

    # jsonb cannot hold U+0000: the value is null and its serialized bytes are kept.
    assert rows[20].values == {"v": _cell(None, 20, value_raw="0x" + b"nul\x00here".hex())}


def test_values_are_rendered_as_cassandra_to_json(ts: TimescaleDestination) -> None:
    at_ms = 1_700_000_000_123
    written = _us(2024, 5, 6, 7, 8, 9, 123_456)
    change = _one(
        changes_of_update(
            UpdateBuilder(PLAIN, {"id": 7})
            .insert({}, {"name": 'quo"te', "score": 1e21, "at": at_ms}, written)
            .build()
        )
    )
    ts.apply(PLAIN, [change])
    (row,) = ts.history(PLAIN)
    assert row.values == {
        "name": _cell('quo"te', written),
        "score": _cell(1e21, written),  # toJson prints 1.0E21: jsonb keeps the number
        "at": _cell("2023-11-14 22:13:20.123Z", written),
    }
    assert row.time == dt.datetime(2024, 5, 6, 7, 8, 9, 123_456, tzinfo=dt.UTC)
    assert row.timestamp == written


@pytest.mark.parametrize("staged", [False, True], ids=["changes", "change_batch"])
def test_stored_cells_list_only_what_differs_from_a_plain_live_cell(
    ts: TimescaleDestination, staged: bool
) -> None:
    """``_cdc_values`` as stored: a cell's timestamp only where it is not the row's, ttl, local
    deletion time and deleted only where set; ``history()`` fills the rest in."""

    def b(k: int) -> UpdateBuilder:
        return UpdateBuilder(PLAIN, {"id": k}, now=NOW)

    statements = [
        b(1).insert({}, {"name": "a", "score": 1.5}, 10),
        b(2).insert({}, {"name": "b"}, 10).update({}, {"score": 2.5}, 12),
        b(3).update({}, {"name": "c"}, 13, ttl=60),
        b(4).update({}, {"name": None}, 14),
    ]
    changes = [c for s in statements for c in changes_of_update(s.build())]
    if staged:
        ts.apply_batch(PLAIN, ChangeBatch.from_changes(PLAIN, changes))
    else:
        ts.apply(PLAIN, changes)
    layout, _ = ts._history(PLAIN)
    with ts._connection().cursor() as cur:
        cur.execute(f'SELECT id, _cdc_values FROM "{layout.schema}"."{layout.name}" ORDER BY id')
        stored = dict(cur.fetchall())
    ts._connection().rollback()
    assert stored == {
        1: {"name": {"value": "a"}, "score": {"value": 1.5}},
        2: {"name": {"value": "b", "timestamp": 10}, "score": {"value": 2.5}},
        3: {"name": {"value": "c", "ttl": 60, "local_deletion_time": NOW + 60}},
        4: {"name": {"value": None, "local_deletion_time": NOW, "deleted": True}},
    }
    rows = {r.partition_key["id"]: r for r in ts.history(PLAIN)}
    assert rows[2].values == {"name": _cell("b", 10), "score": _cell(2.5, 12)}
    assert rows[4].values == {"name": _cell(None, 14, local_deletion_time=NOW, deleted=True)}
    # A document of the earlier form, every field listed, reads the same.
    assert full_cells({"name": _cell("b", 10)}, 12) == {"name": _cell("b", 10)}


# --------------------------------------------------------------------------------------------
# Current state


@pytest.mark.parametrize("staged", [False, True], ids=["changes", "change_batch"])
@HYPOTHESIS
@given(changes=workloads(), seed=st.integers(0, 2**32), now=st.integers(NOW - 250, NOW + 250))
def test_current_state_converges_to_the_model_next_to_the_history(
    ts_state: TimescaleDestination, staged: bool, changes: list[RowChange], seed: int, now: int
) -> None:
    """Both ways in: change lists, and staged change batches (column-wise history rows and
    fresh rows)."""
    ts_state.ensure_table(TABLE)
    ts_state.truncate(TABLE)
    copies = _provenance(changes, "n1", 1) + _provenance(changes, "n2", 2)
    for batch in _batches(copies, random.Random(seed)):
        if staged:
            ts_state.apply_batch(TABLE, ChangeBatch.from_changes(TABLE, batch))
        else:
            ts_state.apply(TABLE, batch)
    model = TableModel(TABLE)
    model.apply_all(changes)
    assert canonical(TABLE, ts_state.read_state(TABLE, now)) == canonical(TABLE, model.visible(now))
    assert len(ts_state.history(TABLE)) == len({_content(c) for c in changes})


def test_history_and_state_commit_together(
    ts_state: TimescaleDestination, monkeypatch: pytest.MonkeyPatch
) -> None:
    ck = {"c1": 1, "c2": "a"}
    before_batch = list(
        changes_of_update(UpdateBuilder(TABLE, {"k": 1}).insert(ck, {"v": "before"}, 10).build())
    )
    ts_state.apply(TABLE, before_batch)
    state = canonical(TABLE, ts_state.read_state(TABLE, NOW))
    from cdc_platform.destinations.postgres import sink

    def broken_write(self: Any, rows: Any, partitions: Any) -> None:
        raise RuntimeError("disk full while writing the current state")

    monkeypatch.setattr(sink._Store, "write", broken_write)
    failing = list(changes_of_update(UpdateBuilder(TABLE, {"k": 1}).update(ck, {"v": "after"}, 20).build()))
    with pytest.raises(DestinationError, match="disk full") as info:
        ts_state.apply(TABLE, failing, batch="segment-9:4096")
    assert "destination timescaledb" in str(info.value) and "batch segment-9:4096" in str(info.value)
    monkeypatch.undo()
    assert [r.timestamp for r in ts_state.history(TABLE)] == [10]  # the history rolled back too
    assert canonical(TABLE, ts_state.read_state(TABLE, NOW)) == state
    ts_state.apply(TABLE, failing)  # the rerun applies both
    assert [r.timestamp for r in ts_state.history(TABLE)] == [10, 20]
    assert canonical(TABLE, ts_state.read_state(TABLE, NOW)) != state


def test_read_state_needs_current_state(ts: TimescaleDestination) -> None:
    with pytest.raises(CurrentStateDisabledError, match=r"current_state=True") as info:
        ts.read_state(TABLE, NOW)
    assert "table ks.t" in str(info.value)
    with pytest.raises(ValueError, match="history=True, current_state=True"):
        TimescaleDestination("postgresql://unused", history=False, current_state=False)


def test_batches_of_another_table_are_refused(ts: TimescaleDestination) -> None:
    change = _one(
        changes_of_update(
            UpdateBuilder(PLAIN, {"id": 1}).insert({}, {"name": "a"}, 5).build(), segment_id=3, position=77
        )
    )
    with pytest.raises(
        DestinationError, match=r"holds 1 change\(s\) of ks\.plain \(first from segment 3 position 77\)"
    ):
        ts.apply(TABLE, [change])


def test_connection_loss_is_retried(ts: TimescaleDestination, postgres_url: str) -> None:
    ts.ensure_table(PLAIN)
    pid = ts._connection().info.backend_pid
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    change = _one(changes_of_update(UpdateBuilder(PLAIN, {"id": 1}).insert({}, {"name": "a"}, 5).build()))
    result = ts.apply(PLAIN, [change])
    assert result.retries >= 1
    assert [r.change_id for r in ts.history(PLAIN)] == [change_id(PLAIN, change)]


# --------------------------------------------------------------------------------------------
# Schema evolution

EVOLVED = parse_schema(
    """
    CREATE TABLE ks.plain (
        id int PRIMARY KEY,
        name text,
        at timestamp,
        extra list<int>
    ) WITH ID = 00000000-0000-1000-8000-000000000102;
    CREATE TABLE ks.rekeyed (
        id text PRIMARY KEY,
        name text
    ) WITH ID = 00000000-0000-1000-8000-000000000103;
    """
)


def test_new_columns_are_new_json_keys_and_are_recorded(ts: TimescaleDestination, postgres_url: str) -> None:
    ts.ensure_table(PLAIN)
    evolved = EVOLVED.table("ks.plain")
    changes = ts.ensure_table(evolved)
    assert changes == [
        "history of ks.plain records new column extra list<int> in _cdc_values",
        "column score double is no longer in ks.plain: later changes do not carry it "
        "(its history stays in _cdc_values)",
    ]
    assert ts.ensure_table(evolved) == []
    ts.apply(
        evolved,
        list(changes_of_update(UpdateBuilder(evolved, {"id": 1}).update({}, {"extra": [4]}, 5).build())),
    )
    (row,) = ts.history(evolved)
    assert [e["value"] for e in row.values["extra"] if not e["collection_deletion"]] == [4]
    with psycopg.connect(postgres_url) as conn:
        recorded = [
            r[0]
            for r in _rows(
                conn,
                'SELECT change FROM cdc_meta.schema_history WHERE keyspace = %s AND "table" = %s ORDER BY id',
                "ks",
                "plain",
            )
        ]
    assert recorded[-2:] == changes


def test_a_different_primary_key_is_refused(ts: TimescaleDestination) -> None:
    ts.ensure_table(PLAIN)
    rekeyed = dataclasses.replace(EVOLVED.table("ks.rekeyed"), name="plain")
    with pytest.raises(
        DestinationError, match=r"column id of .*plain\$history is integer, the schema needs text"
    ):
        ts.ensure_table(rekeyed)


# --------------------------------------------------------------------------------------------
# The timescaledb extension path (the extension cannot be installed here)


def test_extension_statements_are_exact() -> None:
    """The hypertable SQL, compared as text: the extension cannot be installed here to run it."""
    layout = HistoryLayout.of(PLAIN, "p_")
    options = HypertableOptions(
        chunk_interval="1 day",
        compress_after="30 days",
        compress_segmentby=("_cdc_pk",),
        drop_after="400 days",
    )
    assert [s.as_string(None) for s in hypertable_statements(layout, options)] == [
        """SELECT create_hypertable('"p_ks"."plain$history"'::regclass, by_range('_cdc_time', '1 day'::interval), if_not_exists => TRUE)""",
        """ALTER TABLE "p_ks"."plain$history" SET (timescaledb.compress, timescaledb.compress_orderby = '_cdc_time DESC, _cdc_change_id', timescaledb.compress_segmentby = '"_cdc_pk"')""",
        """SELECT add_compression_policy('"p_ks"."plain$history"'::regclass, compress_after => '30 days'::interval, if_not_exists => TRUE)""",
        """SELECT add_retention_policy('"p_ks"."plain$history"'::regclass, drop_after => '400 days'::interval, if_not_exists => TRUE)""",
    ]
    assert [s.as_string(None) for s in hypertable_statements(layout, HypertableOptions())] == [
        """SELECT create_hypertable('"p_ks"."plain$history"'::regclass, by_range('_cdc_time', '7 days'::interval), if_not_exists => TRUE)"""
    ]
    with pytest.raises(ValueError, match="compress_segmentby names columns the history table lacks"):
        hypertable_statements(layout, HypertableOptions(compress_after="1 day", compress_segmentby=("nope",)))
    columns = (
        '"_cdc_time" timestamptz NOT NULL, "_cdc_change_id" uuid NOT NULL, "_cdc_timestamp" bigint NOT NULL, '
        '"_cdc_operation" text NOT NULL, "_cdc_kind" text NOT NULL, "_cdc_pk" bytea NOT NULL, "_cdc_ck" bytea, '
        '"id" integer, "_cdc_values" jsonb NOT NULL, "_cdc_liveness_ts" bigint, "_cdc_liveness_ttl" integer, '
        '"_cdc_liveness_expires" bigint, "_cdc_deletion_ts" bigint, "_cdc_deletion_time" bigint, '
        '"_cdc_range" jsonb, "_cdc_node" text, "_cdc_segment_id" bigint, "_cdc_position" bigint, '
        '"_cdc_entry_start" bigint, "_cdc_batch" text, _cdc_loaded_at timestamptz NOT NULL DEFAULT now(), '
        'CONSTRAINT "plain$history$uq" UNIQUE (_cdc_time, _cdc_change_id)'
    )
    # A hypertable starts as a plain table; the fallback is partitioned by the same column.
    assert create_table_statement(layout, partitioned=False).as_string(None) == (
        f'CREATE TABLE "p_ks"."plain$history" ({columns})'
    )
    assert create_table_statement(layout, partitioned=True).as_string(None) == (
        f'CREATE TABLE "p_ks"."plain$history" ({columns}) PARTITION BY RANGE (_cdc_time)'
    )


STUBS = """
CREATE TABLE {s}.calls (fn text, args text);
CREATE TYPE {s}.dimension_info AS (column_name name, partition_interval text);
CREATE FUNCTION {s}.by_range(column_name NAME, partition_interval ANYELEMENT = NULL::bigint,
                             partition_func REGPROC = NULL)
    RETURNS {s}.dimension_info LANGUAGE sql
    AS $$ SELECT ROW(column_name, partition_interval::text)::{s}.dimension_info $$;
CREATE FUNCTION {s}.create_hypertable(relation REGCLASS, dimension {s}.dimension_info,
                                      create_default_indexes BOOLEAN = TRUE,
                                      if_not_exists BOOLEAN = FALSE, migrate_data BOOLEAN = FALSE)
    RETURNS TABLE(hypertable_id INT, created BOOL) LANGUAGE sql
    AS $$ INSERT INTO {s}.calls VALUES ('create_hypertable', concat_ws(' ', relation,
          (dimension).column_name, (dimension).partition_interval, create_default_indexes,
          if_not_exists, migrate_data)) RETURNING 1, true $$;
CREATE FUNCTION {s}.add_retention_policy(relation REGCLASS, drop_after ANYELEMENT = NULL,
                                         if_not_exists BOOL = false, schedule_interval INTERVAL = NULL,
                                         initial_start TIMESTAMPTZ = NULL, timezone TEXT = NULL,
                                         drop_created_before INTERVAL = NULL)
    RETURNS INTEGER LANGUAGE sql
    AS $$ INSERT INTO {s}.calls VALUES ('add_retention_policy',
          concat_ws(' ', relation, drop_after, if_not_exists)) RETURNING 1 $$;
"""


def test_extension_path_runs_against_stubs_of_timescaledb_functions(
    postgres_url: str, schema_prefix: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With the extension "installed", the table is a hypertable: no partitions, no warning.

    The extension cannot be installed here, so stub functions with TimescaleDB's signatures
    (``"any"`` parameters declared ``anyelement``) take its place: the server parses, resolves
    and binds the generated calls and the stubs record their arguments.
    """
    caplog.set_level(logging.WARNING, logger=SINK_LOG)
    stubs = f"{schema_prefix}stubs"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{stubs}"')
        admin.execute(STUBS.format(s=f'"{stubs}"'))
    monkeypatch.setattr(TimescaleDestination, "_timescaledb_version", lambda self, conn: ("2.17.2", True))
    url = make_conninfo(postgres_url, options=f"-c search_path={stubs},public")
    with TimescaleDestination(
        url, schema_prefix=schema_prefix, hypertable=HypertableOptions(drop_after="90 days")
    ) as dest:
        assert isinstance(dest, TimescaleDestination)
        changes = dest.ensure_table(PLAIN)
        change = _one(
            changes_of_update(
                UpdateBuilder(PLAIN, {"id": 1}).insert({}, {"name": "a"}, _us(2024, 6, 1)).build()
            )
        )
        result = dest.apply(PLAIN, [change])
        again = dest.apply(PLAIN, [dataclasses.replace(change, node="other")])
        history = dest.history(PLAIN)
    schema = f"{schema_prefix}ks"
    assert (
        changes[0]
        == f"created hypertable {schema}.plain$history (chunks of 7 days on _cdc_time, retention 90 days)"
    )
    assert not [n for n in result.notes if n.startswith("created partition")]
    assert (result.rows_written, again.rows_written) == (1, 0)
    assert [r.partition for r in history] == [f'{schema}."plain$history"']
    assert not [r for r in caplog.records if r.name == SINK_LOG]
    with psycopg.connect(postgres_url) as conn:
        calls = _rows(conn, f'SELECT fn, args FROM "{stubs}".calls')
        relkind = _rows(
            conn, "SELECT relkind FROM pg_class WHERE oid = %s::regclass", f'"{schema}"."plain$history"'
        )
    table = f'{schema}."plain$history"'
    assert calls == [
        ("create_hypertable", f"{table} _cdc_time 7 days t t f"),
        ("add_retention_policy", f"{table} 90 days t"),
    ]
    assert relkind == [("r",)]
    # Reopening an existing hypertable repeats none of it.
    with TimescaleDestination(url, schema_prefix=schema_prefix) as dest:
        assert dest.ensure_table(PLAIN) == []
    with psycopg.connect(postgres_url) as conn:
        assert len(_rows(conn, f'SELECT 1 FROM "{stubs}".calls')) == 2


def test_partition_key_bytes_select_the_history_of_a_partition(ts: TimescaleDestination) -> None:
    changes = [
        _one(changes_of_update(UpdateBuilder(PLAIN, {"id": k}).insert({}, {"name": "a"}, 10 + k).build()))
        for k in (1, 2, 3)
    ]
    ts.apply(PLAIN, changes)
    key = partition_bytes(PLAIN, {"id": 2})
    assert [r.partition_key for r in ts.history(PLAIN, keys=[key])] == [{"id": 2}]
    since = dt.datetime(1970, 1, 1, 0, 0, 0, 12, tzinfo=dt.UTC)
    assert [r.timestamp for r in ts.history(PLAIN, since=since)] == [12, 13]
    assert [r.timestamp for r in ts.history(PLAIN, until=since)] == [11]


def _stored_history(dest: TimescaleDestination, table: Any) -> list[tuple[Any, ...]]:
    """Every stored history row (all columns but the load time), by change id; NaN (a double
    key may be NaN) as text, so that equal rows compare equal."""
    layout, _ = dest._history(table)
    # jsonb as its (canonical) text: a number may have more digits than Python's int() takes.
    names = ", ".join(f'"{c.name}"' + ("::text" if c.type == "jsonb" else "") for c in layout.columns())
    with dest._connection().cursor() as cur:
        cur.execute(f'SELECT {names} FROM "{layout.schema}"."{layout.name}" ORDER BY _cdc_change_id')
        out = cur.fetchall()
    dest._connection().rollback()
    return [tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row) for row in out]


@HYPOTHESIS
@given(
    data=st.data(),
    which=st.sampled_from(["t", "plain", "all_types"]),
    seed=st.integers(0, 2**32),
)
def test_change_batches_store_the_history_change_lists_store(
    postgres_url: str, schema_prefix: str, data: st.DataObject, which: str, seed: int
) -> None:
    """The column-wise history rows (plain row changes of a staged batch) equal ``history_row``'s,
    column for column, with the same change ids, first copies and partitions."""
    table, strategy = {
        "t": (TABLE, workloads()),
        "plain": (PLAIN, plain_workloads()),
        "all_types": (ALL_TYPES, _inserts()),
    }[which]
    changes = data.draw(strategy)
    rng = random.Random(seed)
    changes = _provenance(changes, "node1", 7) + rng.sample(
        _provenance(changes, "node2", 9), k=len(changes) // 2
    )
    rng.shuffle(changes)
    tag = f"{schema_prefix}{rng.randrange(1 << 30)}_"
    objects = TimescaleDestination(postgres_url, schema_prefix=f"{tag}o_")
    columns = TimescaleDestination(postgres_url, schema_prefix=f"{tag}c_")
    try:
        staged = ChangeBatch.from_changes(table, changes)
        a = objects.apply(table, staged.to_changes(), batch="b1")
        b = columns.apply_batch(table, staged, batch="b1")
        notes = [[n.replace(f"{tag}o_", "").replace(f"{tag}c_", "") for n in r.notes] for r in (a, b)]
        assert a.rows_written == b.rows_written and notes[0] == notes[1]
        assert _stored_history(objects, table) == _stored_history(columns, table)
    finally:
        objects.close()
        columns.close()


def test_plain_inserts_take_the_column_wise_path(ts: TimescaleDestination) -> None:
    changes = [
        c
        for i in range(20)
        for c in changes_of_update(
            UpdateBuilder(PLAIN, {"id": i}, now=NOW)
            .insert({}, {"name": f"n\x00{i}" if i == 3 else f"n{i}"}, 10 + i)
            .build()
        )
    ]
    layout, _ = ts._history(PLAIN)
    plain, rest = timed_rows(PLAIN, ChangeBatch.from_changes(PLAIN, changes).data)
    assert plain is not None and len(plain) == 20 and not rest.any()
    rows, left = history_columns(layout, plain, "", ColumnCopy(ts._connection()))
    assert len(rows) == 19
    # The one whose text jsonb cannot hold (U+0000) keeps its raw bytes: history_row's job.
    assert left.tolist() == [3]
    assert [uuid_bytes for uuid_bytes in rows.ids] == [
        change_id(PLAIN, c).bytes for i, c in enumerate(changes) if i != 3
    ]


def test_a_replica_copy_renders_no_document(
    ts: TimescaleDestination, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain row changes are looked up by id first: documents are rendered only for new ones."""
    from cdc_platform.destinations.timescaledb import sink

    changes = [
        c
        for i in range(10)
        for c in changes_of_update(
            UpdateBuilder(PLAIN, {"id": i}, now=NOW).insert({}, {"name": f"n{i}"}, 10 + i).build()
        )
    ]
    rendered: list[int] = []
    original = sink.history_columns

    def counting(layout: Any, plain: Any, *args: Any) -> Any:
        rendered.append(len(plain))
        return original(layout, plain, *args)

    monkeypatch.setattr(sink, "history_columns", counting)
    ts.apply_batch(PLAIN, ChangeBatch.from_changes(PLAIN, changes[:6]))
    copy = ChangeBatch.from_changes(PLAIN, _provenance(changes, "node2", 9))
    assert ts.apply_batch(PLAIN, copy).rows_written == 4
    assert rendered == [6, 4]
    assert ts.apply_batch(PLAIN, copy).rows_written == 0
    assert rendered == [6, 4]
    assert {r.change_id.bytes for r in ts.history(PLAIN)} == {change_id(PLAIN, c).bytes for c in changes}


def test_varints_with_more_digits_than_pythons_default_limit(ts: TimescaleDestination) -> None:
    """A varint of 5,001 digits (Python converts at most 4,300 to text by default) is staged,
    rendered and read back exactly."""
    big = 10**5000 + 7
    change = _one(
        changes_of_update(
            UpdateBuilder(ALL_TYPES, {"k": "a"}, now=NOW)
            .insert(
                {c.name: 0 if c.name != "c1" else b"" for c in ALL_TYPES.clustering}
                | {"c2": False, "c10": 0.0, "c11": timeuuid_for(1, 1), "c12": timeuuid_for(1, 1)},
                {"v_varint": big},
                10,
            )
            .build()
        )
    )
    staged = ChangeBatch.from_changes(ALL_TYPES, [change])
    assert staged.to_changes()[0].cells[0].value == big
    ts.apply_batch(ALL_TYPES, staged)
    (row,) = ts.history(ALL_TYPES)
    assert row.values["v_varint"]["value"] == big


def test_stored_rows_the_lookup_misses_fall_back_to_on_conflict(
    ts: TimescaleDestination, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows are COPYed straight into the history once a lookup found them new; were the
    lookup wrong (a writer without the lock), the unique constraint refuses the COPY and the
    staging path inserts nothing twice."""
    changes = [
        c
        for i in range(5)
        for c in changes_of_update(
            UpdateBuilder(TABLE, {"k": i}, now=NOW).insert({"c1": 1, "c2": "a"}, {"v": "x"}, 10).build()
        )
    ]
    batch = ChangeBatch.from_changes(TABLE, changes)
    assert ts.apply_batch(TABLE, batch).rows_written == 5
    monkeypatch.setattr(TimescaleDestination, "_stored_ids", staticmethod(lambda *args: set()))
    with caplog.at_level(logging.WARNING, logger=SINK_LOG):
        again = ts.apply_batch(TABLE, batch)
    assert again.rows_written == 0
    assert "INSERT … ON CONFLICT DO NOTHING" in caplog.text
    assert ts.history_count(TABLE) == 5


def test_pending_batch_counts_what_the_history_and_state_lack(ts_state: TimescaleDestination) -> None:
    changes = [
        c
        for i in range(4)
        for c in changes_of_update(
            UpdateBuilder(TABLE, {"k": i}, now=NOW).insert({"c1": 1, "c2": "a"}, {"v": "x"}, 10).build()
        )
    ]
    staged = ChangeBatch.from_changes(TABLE, changes)
    ts_state.ensure_table(TABLE)
    # 4 history rows and 4 current-state rows to write
    assert ts_state.pending_batch(TABLE, staged) == ts_state.pending(TABLE, changes) == 8
    ts_state.apply_batch(TABLE, staged)
    assert ts_state.pending_batch(TABLE, staged) == ts_state.pending(TABLE, changes) == 0


def test_pending_batch_counts_a_change_no_load_can_store_as_pending(ts: TimescaleDestination) -> None:
    """A row change without any timestamp has no write time (no decoded change is like that):
    both containment checks count it as missing instead of failing."""
    odd = RowChange(ChangeKind.ROW, "ks", "plain", {"id": 1}, {}, ())
    ts.ensure_table(PLAIN)
    assert ts.pending(PLAIN, [odd]) == ts.pending_batch(PLAIN, ChangeBatch.from_changes(PLAIN, [odd])) == 1


def test_repeated_values_are_rendered_once_and_as_each_alone() -> None:
    """A column repeating few distinct values renders each once; the texts equal rendering
    every value by itself, with values of equal numbers but different bits (``-0.0`` and
    ``0.0``, NaN payloads) kept apart, and nulls null."""
    import struct
    import uuid
    from decimal import Decimal

    from cdc_platform.changes.arrow import column_values
    from cdc_platform.destinations.columnar import column_of
    from cdc_platform.destinations.timescaledb import columnar
    from cdc_platform.destinations.timescaledb.sink import _safe

    schema = parse_schema(
        """
        CREATE KEYSPACE r WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
        CREATE TABLE r.t (id int PRIMARY KEY, d double, f float, m decimal, u uuid)
            WITH ID = 00000000-0000-1000-8000-000000000301;
        """
    )
    table = schema.table("r.t")
    nan2 = struct.unpack(">d", bytes.fromhex("7ff8000000000002"))[0]
    choices = {
        "d": [0.1, -0.0, 0.0, math.nan, nan2, 1e300, 2.5, None],
        "f": [0.1, -0.0, 0.0, math.inf, 3.25, None],
        "m": [Decimal("1.50"), Decimal("1.5"), Decimal("-0"), Decimal("1E+400"), None],
        "u": [uuid.UUID(int=1), uuid.UUID(int=2), None],
    }
    rng = random.Random(7)
    changes = []
    for i in range(300):
        values = {c: rng.choice(v) for c, v in choices.items()}
        update = UpdateBuilder(table, {"id": i}, now=NOW).insert({}, values, 10 + i).build()
        changes += changes_of_update(update)
    data = ChangeBatch.from_changes(table, changes).data
    for name in ("d", "f", "m", "u"):
        column = table.by_name[name]
        values = pc.struct_field(column_of(data, name), "value")
        assert columnar._repeated(values) is not None, name
        texts, fine = columnar._json_values(column.type, values)
        alone = [None if v is None else _safe(column.type, v) for v in column_values(column.type, values)]
        assert texts.to_pylist() == [None if a is None else a[0].encode() for a in alone], name
        assert fine.to_pylist() == [a is None or a[1] is None for a in alone], name


def test_a_plain_row_without_any_timestamp_is_left_to_history_row() -> None:
    """A row change with no cell, liveness or deletion timestamp has no history time:
    ``timed_rows`` leaves it out of the plain rows (``history_row`` reports it), and
    ``write_times`` refuses rows taken without that filter."""
    from cdc_platform.destinations.identity import plain_rows
    from cdc_platform.destinations.timescaledb.columnar import write_times

    stamped = list(
        changes_of_update(UpdateBuilder(PLAIN, {"id": 1}, now=NOW).insert({}, {"name": "a"}, 10).build())
    )
    bare = dataclasses.replace(stamped[0], partition_key={"id": 2}, cells=(), liveness_timestamp=None)
    data = ChangeBatch.from_changes(PLAIN, [stamped[0], bare]).data
    plain, rest = timed_rows(PLAIN, data)
    assert plain is not None and plain.positions.tolist() == [0] and rest.tolist() == [False, True]
    assert write_times(plain).tolist() == [10]
    every = plain_rows(PLAIN, data)
    assert every is not None and len(every) == 2
    with pytest.raises(ValueError, match="without a write time"):
        write_times(every)
