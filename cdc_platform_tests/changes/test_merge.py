"""The merge model against Cassandra's rules, case by case, and its convergence properties."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_platform.changes.merge import TableModel, canonical
from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.schema.cql import parse_schema
from cdc_platform_tests.workloads import workloads

SCHEMA = parse_schema(
    """
    CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
    CREATE TABLE ks.t (
        k int,
        c1 int,
        c2 text,
        s text static,
        v text,
        n int,
        tags set<text>,
        attrs map<text, int>,
        items list<int>,
        PRIMARY KEY (k, c1, c2)
    ) WITH ID = 00000000-0000-1000-8000-000000000101
        AND CLUSTERING ORDER BY (c1 DESC, c2 ASC);
    """
)
T = SCHEMA.table("ks.t")
NOW = 1_800_000_000


def ch(builder: UpdateBuilder) -> list[RowChange]:
    return list(changes_of_update(builder.build()))


def b(k: int = 1, now: int = NOW - 100) -> UpdateBuilder:
    return UpdateBuilder(T, {"k": k}, now=now)


def state(*changes: list[RowChange], now: int = NOW) -> dict:  # type: ignore[type-arg]
    m = TableModel(T)
    for group in changes:
        m.apply_all(group)
    return {ck: row for part in m.visible(now).values() for ck, row in part.rows.items()} | {
        "static": next(iter(m.visible(now).values())).static if m.visible(now) else None
    }


def row(c1: int, c2: str) -> tuple[bytes, bytes]:
    return (c1.to_bytes(4, "big", signed=True), c2.encode())


CK = {"c1": 1, "c2": "a"}


def test_later_timestamp_wins_in_any_order() -> None:
    a = ch(b().update(CK, {"v": "old"}, 10))
    c = ch(b().update(CK, {"v": "new"}, 20))
    assert state(a, c)[row(1, "a")] == {"v": "new"}
    assert state(c, a)[row(1, "a")] == {"v": "new"}


def test_ties_follow_cells_resolve_regular() -> None:
    live_b = ch(b().update(CK, {"v": "b"}, 10))
    live_a = ch(b().update(CK, {"v": "a"}, 10))
    tomb = ch(b().delete_columns(CK, ["v"], 10))
    expiring = ch(b().update(CK, {"v": "a"}, 10, ttl=1000))
    # Equal timestamps, both live: the greater value bytes win.
    assert state(live_a, live_b)[row(1, "a")] == {"v": "b"}
    assert state(live_b, live_a)[row(1, "a")] == {"v": "b"}
    # A tombstone beats a live cell; an expiring cell beats a live cell (even with smaller bytes).
    assert row(1, "a") not in state(live_b, tomb)
    assert state(live_b, expiring)[row(1, "a")] == {"v": "a"}
    # A tombstone beats an expiring cell.
    assert row(1, "a") not in state(expiring, tomb)


def test_value_bytes_compare_unsigned() -> None:
    minus_one = ch(b().update(CK, {"n": -1}, 10))  # ff ff ff ff
    one = ch(b().update(CK, {"n": 1}, 10))  # 00 00 00 01
    assert state(one, minus_one)[row(1, "a")] == {"n": -1}


def test_row_deletion_shadows_older_cells_only() -> None:
    insert = ch(b().insert(CK, {"v": "x", "n": 1}, 10))
    delete = ch(b().delete_row(CK, 15))
    later = ch(b().update(CK, {"n": 2}, 20))
    assert row(1, "a") not in state(insert, delete)
    assert state(delete, insert, later)[row(1, "a")] == {"n": 2}
    # A deletion at exactly the write timestamp shadows it.
    assert row(1, "a") not in state(ch(b().delete_row(CK, 10)), insert)


def test_partition_and_range_deletions() -> None:
    rows = [ch(b().insert({"c1": i, "c2": x}, {"v": f"{i}{x}"}, 10)) for i in range(1, 6) for x in ("a", "b")]
    static = ch(b().update(None, {"s": "st"}, 10))
    everything = [c for r in rows for c in r] + static[0:1]
    # c1 is DESC: the clustering-order range from c1=4 down to c1=2 (both inclusive).
    rng = ch(b().delete_range({"c1": 2}, {"c1": 4}, 12))
    after = state(everything, rng)
    assert sorted(int.from_bytes(k[0], "big") for k in after if k != "static") == [1, 1, 5, 5]
    assert after["static"] == {"s": "st"}
    # Exclusive end, prefix on two columns: 3 <= c1 <= 3 and c2 < 'b'.
    rng2 = ch(b().delete_range({"c1": 3, "c2": "a"}, {"c1": 3, "c2": "b"}, 12, end_inclusive=False))
    after2 = state(everything, rng2)
    assert row(3, "a") not in after2 and row(3, "b") in after2
    pdel = ch(b().delete_partition(11))
    after3 = state(everything, pdel, ch(b().insert({"c1": 9, "c2": "z"}, {"v": "new"}, 13)))
    assert [k for k in after3 if k != "static"] == [row(9, "z")]
    assert after3["static"] is None


def test_ttl() -> None:
    expiring_insert = ch(b(now=NOW - 100).insert(CK, {"v": "x"}, 10, ttl=50))
    assert row(1, "a") not in state(expiring_insert)  # expired 50 s before NOW
    assert state(expiring_insert, now=NOW - 60)[row(1, "a")] == {"v": "x"}
    # A TTL on one column: the row stays (its liveness does not expire), the column goes.
    insert = ch(b().insert(CK, {"n": 1}, 10))
    ttl_v = ch(b(now=NOW - 100).update(CK, {"v": "tmp"}, 11, ttl=50))
    assert state(insert, ttl_v)[row(1, "a")] == {"n": 1}
    assert state(insert, ttl_v, now=NOW - 99)[row(1, "a")] == {"n": 1, "v": "tmp"}


def test_collections_merge_per_element() -> None:
    add1 = ch(b().add_elements(CK, "tags", ["a"], 10))
    add2 = ch(b().add_elements(CK, "tags", ["b"], 11))
    remove_a = ch(b().remove_elements(CK, "tags", ["a"], 12))
    overwrite = ch(b().update(CK, {"tags": ["z"]}, 20))  # deletion at 19 + element z
    late_add = ch(b().add_elements(CK, "tags", ["c"], 15))  # older than the overwrite
    assert state(add1, add2)[row(1, "a")] == {"tags": ["a", "b"]}
    assert state(remove_a, add2, add1)[row(1, "a")] == {"tags": ["b"]}
    assert state(add1, overwrite, late_add)[row(1, "a")] == {"tags": ["z"]}
    put = ch(b().add_elements(CK, "attrs", [("x", 1), ("y", 2)], 10))
    delete_key = ch(b().remove_elements(CK, "attrs", ["x"], 11))
    assert state(put, delete_key)[row(1, "a")] == {"attrs": [("y", 2)]}
    first = ch(b().add_elements(CK, "items", [1, 2], 10))
    second = ch(b().add_elements(CK, "items", [3], 11))
    assert state(second, first)[row(1, "a")] == {"items": [1, 2, 3]}  # ordered by cell id (time)


def test_static_columns_live_without_rows() -> None:
    st_only = ch(b().update(None, {"s": "only"}, 10))
    m = TableModel(T)
    m.apply_all(st_only)
    (part,) = m.visible(NOW).values()
    assert part.static == {"s": "only"} and part.rows == {}


# --------------------------------------------------------------------------------------------
# Convergence: any order, any duplication, same state.


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.integers(0, 2**32), st.integers(NOW - 250, NOW + 250))
def test_any_order_and_duplication_converges(changes: list[RowChange], seed: int, now: int) -> None:
    rng = random.Random(seed)
    reference = TableModel(T)
    reference.apply_all(changes)
    shuffled = changes + rng.sample(changes, k=min(len(changes), rng.randint(0, 10)))
    rng.shuffle(shuffled)
    other = TableModel(T)
    other.apply_all(shuffled)
    assert canonical(T, other.visible(now)) == canonical(T, reference.visible(now))
