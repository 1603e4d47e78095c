"""Change ids and partition keys of a staged batch, column-wise (``destinations.identity``),
against ``change_id`` and ``partition_bytes`` on the change objects."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_platform.changes.arrow import ChangeBatch
from cdc_platform.changes.identity import change_id
from cdc_platform.changes.merge import partition_bytes
from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.destinations.identity import batch_identity, batch_partitions, plain_rows
from cdc_platform.destinations.state import encode_key
from cdc_platform.schema.model import Table
from cdc_platform_tests.destinations.test_columnar import ALL_TYPES, _inserts
from cdc_platform_tests.workloads import NOW, PLAIN, SCHEMA, TABLE, plain_workloads, workloads

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(table: Table, changes: list[RowChange]) -> None:
    batch = ChangeBatch.from_changes(table, changes)
    staged = batch.to_changes()  # what the batch holds, as the object path reads it
    ids, pks = batch_identity(table, batch)
    assert ids == {change_id(table, c).bytes for c in staged}
    assert pks == {encode_key(partition_bytes(table, c.partition_key)) for c in staged}
    keys = batch_partitions(table, batch)
    assert len(keys) == len(set(keys)) and set(keys) == {
        partition_bytes(table, c.partition_key) for c in staged
    }
    plain = plain_rows(table, batch.data)
    if plain is not None:
        # Row by row, not only as sets: each plain row's id is its own change's.
        chosen = [staged[i] for i in plain.positions]
        assert plain.others().tolist() == [i not in set(plain.positions) for i in range(len(staged))]
        assert plain.ids == [change_id(table, c).bytes for c in chosen]
        assert plain.pk.to_pylist() == [encode_key(partition_bytes(table, c.partition_key)) for c in chosen]
        back = plain.take(list(range(len(plain)))[::-1])  # taken rows keep their ids and places
        assert (back.ids, back.positions.tolist()) == (plain.ids[::-1], plain.positions.tolist()[::-1])
        assert (
            back.pk.to_pylist() == plain.pk.to_pylist()[::-1]
            and back.others().tolist() == plain.others().tolist()
        )


@SETTINGS
@given(changes=workloads())
def test_ids_and_keys_of_mixed_batches(changes: list[RowChange]) -> None:
    """Deletions, ranges, statics, collections and TTLs next to plain rows."""
    _check(TABLE, changes)


@SETTINGS
@given(changes=plain_workloads())
def test_ids_and_keys_of_plain_batches(changes: list[RowChange]) -> None:
    _check(PLAIN, changes)


@SETTINGS
@given(changes=_inserts())
def test_ids_and_keys_of_every_cql_type(changes: list[RowChange]) -> None:
    _check(ALL_TYPES, changes)


@SETTINGS
@given(data=st.data())
def test_plain_rows_are_most_of_a_load(data: Any) -> None:
    """Inserts and updates of simple cells take the column-wise path; a copy of a change counts
    once, and a partition once."""
    n = data.draw(st.integers(1, 30))
    changes = [
        c
        for i in range(n)
        for c in changes_of_update(
            UpdateBuilder(PLAIN, {"id": i % 7}, now=NOW)
            .insert({}, {"name": f"n{i}", "score": i / 3}, 10 + i)
            .build()
        )
    ]
    batch = ChangeBatch.from_changes(PLAIN, changes + changes[: n // 2])
    plain = plain_rows(PLAIN, batch.data)
    assert plain is not None and not plain.others().any()
    ids, pks = batch_identity(PLAIN, batch)
    assert (len(ids), len(pks)) == (n, min(n, 7))


def test_the_load_stage_reports_distinct_changes_and_partitions(pg: Any, tmp_path: Any) -> None:
    """``load_stage`` counts a batch's changes once per content (replica copies are one change)
    and its partitions, now from the staged columns."""
    from cdc_platform.stages import load_stage
    from cdc_platform.staging import BatchRef, StagingArea

    inserts = [
        dataclasses.replace(c, node=node, segment_id=segment)
        for node, segment in (("n1", 1), ("n2", 2))
        for i in range(12)
        for c in changes_of_update(
            UpdateBuilder(PLAIN, {"id": i % 5}, now=NOW).insert({}, {"name": f"n{i}"}, 10 + i).build()
        )
    ]
    deletion = list(changes_of_update(UpdateBuilder(PLAIN, {"id": 40}, now=NOW).delete_partition(50).build()))
    changes = inserts + deletion
    staging = StagingArea(tmp_path)
    ref = BatchRef(
        partition="n1:1",
        node="n1",
        segment_id=1,
        segment_path="CommitLog-7-1.log",
        start=0,
        end=None,
        covered_to=0,
        completed=True,
        updated_at=0.0,
        tables={PLAIN.qualified_name: len(changes)},
    )
    staging.write(ref, "masked", PLAIN, changes)
    (load,) = load_stage(staging, SCHEMA, ref, pg, [PLAIN.qualified_name])
    assert (load.result.changes, load.unique_changes, load.keys, load.pending_after) == (25, 13, 6, 0)
