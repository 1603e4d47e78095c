"""The quarantine store on a real PostgreSQL: dedupe, list, discard, idempotent replay."""

from __future__ import annotations

import dataclasses
import uuid

from cdc_platform.changes.identity import change_id
from cdc_platform.changes.merge import TableModel, canonical
from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.destinations.postgres.sink import PostgresDestination
from cdc_platform.quality.quarantine import Quarantined, QuarantineStore, decode_change, encode_change
from cdc_platform.workload import shop_schema

SCHEMA = shop_schema()
CUSTOMERS = SCHEMA.table("shop.customers")
NOW = 1_767_300_000


def _change(points: int, ts: int = 10, node: str = "node1") -> RowChange:
    b = UpdateBuilder(CUSTOMERS, {"customer_id": uuid.UUID(int=7)}, now=NOW)
    b.insert({}, {"email": "h1:k:abc", "loyalty_points": points, "tags": ["new"]}, ts)
    (ch,) = changes_of_update(b.build(), segment_id=5, position=100, node=node)
    return ch


REASON = {
    "expectation": "expect_column_values_to_be_between",
    "column": "loyalty_points",
    "severity": "error",
    "value_class": "below the minimum",
}


def test_encoding_is_exact() -> None:
    ch = _change(-3)
    assert decode_change(CUSTOMERS, encode_change(CUSTOMERS, ch)) == dataclasses.replace(ch, entry_start=None)


def test_replica_copies_are_one_row(database: str) -> None:
    store = QuarantineStore(database)
    first = _change(-3, node="node1")
    copy = dataclasses.replace(first, node="node2", segment_id=99, position=4242)
    assert change_id(CUSTOMERS, first) == change_id(CUSTOMERS, copy)
    assert store.add(CUSTOMERS, [Quarantined(first, [REASON])]) == 1
    assert store.add(CUSTOMERS, [Quarantined(copy, [REASON])]) == 0
    (entry,) = store.entries()
    assert entry.attempts == 2 and entry.status == "open"
    assert entry.reasons == [REASON]
    assert entry.row_json["cells"] and entry.table == "customers" and entry.segment_id == 5
    assert store.count() == {"shop.customers": 1}


def test_replay_loads_fixed_rows_exactly_once_and_discard(
    database: str, postgres_url: str, schema_prefix: str
) -> None:
    store = QuarantineStore(database)
    bad, worse = _change(-3, ts=10), _change(-50, ts=11)
    store.add(CUSTOMERS, [Quarantined(bad, [REASON]), Quarantined(worse, [REASON])])
    dest = PostgresDestination(postgres_url, schema_prefix=schema_prefix)

    # The rule was relaxed to points >= -10: one row passes now, the other still fails.
    def revalidate(table, changes):  # type: ignore[no-untyped-def]
        ok = [c for c in changes if next(x.value for x in c.cells if x.column == "loyalty_points") >= -10]
        return ok, [c for c in changes if c not in ok]

    result = store.replay(SCHEMA, revalidate, [dest])
    assert (result.replayed, result.still_failing, result.loaded_changes) == (1, 1, 1)
    model = TableModel(CUSTOMERS)
    model.apply(bad)
    assert canonical(CUSTOMERS, dest.read_state(CUSTOMERS, NOW)) == canonical(CUSTOMERS, model.visible(NOW))
    # Replaying again loads nothing more: the replayed row is closed, the failing one still fails.
    again = store.replay(SCHEMA, revalidate, [dest])
    assert (again.replayed, again.still_failing, again.loaded_changes) == (0, 1, 0)
    assert canonical(CUSTOMERS, dest.read_state(CUSTOMERS, NOW)) == canonical(CUSTOMERS, model.visible(NOW))
    (still,) = store.entries()
    assert still.attempts == 3
    assert store.discard([still.id]) == 1
    assert store.entries() == [] and len(store.entries(status="discarded")) == 1
    assert len(store.entries(status="replayed")) == 1
    dest.close()
