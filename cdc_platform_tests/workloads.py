"""Random CQL-level workloads shared by the merge-model and destination tests.

The table exercises every kind of change: inserts (with and without TTL), updates, cell,
row, partition and range deletions (DESC clustering, prefixes, inclusive/exclusive ends),
static columns and non-frozen set, map and list operations, with colliding timestamps so
that Cassandra's tie-breaking rules matter.
"""

from __future__ import annotations

from hypothesis import strategies as st

from cdc_platform.changes.records import RowChange, changes_of_update
from cdc_platform.commitlog.build import UpdateBuilder
from cdc_platform.schema.cql import parse_schema

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
    CREATE TABLE ks.plain (
        id int PRIMARY KEY,
        name text,
        score double,
        at timestamp
    ) WITH ID = 00000000-0000-1000-8000-000000000102;
    """
)
TABLE = SCHEMA.table("ks.t")
PLAIN = SCHEMA.table("ks.plain")
NOW = 1_800_000_000

_ops = st.sampled_from(
    ["insert", "update", "delete_row", "delete_cols", "delete_part", "range", "tags", "attrs", "items", "ttl"]
)


@st.composite
def workloads(draw: st.DrawFn, max_ops: int = 25) -> list[RowChange]:
    """Changes of ``ks.t`` from random statements (few keys and timestamps, so they collide)."""
    out: list[RowChange] = []
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(_ops)
        k = draw(st.integers(0, 2))
        ck = {"c1": draw(st.integers(0, 3)), "c2": draw(st.sampled_from(["a", "b"]))}
        ts = draw(st.integers(1, 40))
        b = UpdateBuilder(TABLE, {"k": k}, now=NOW - draw(st.integers(0, 200)))
        if op == "insert":
            b.insert(ck, {"v": draw(st.sampled_from(["x", "y"])), "n": draw(st.integers(-2, 2))}, ts)
        elif op == "update":
            column = draw(st.sampled_from(["v", "n"]))
            b.update(ck, {column: draw(st.sampled_from([None, "z" if column == "v" else 1]))}, ts)
            b.update(None, {"s": draw(st.sampled_from(["s1", "s2", None]))}, ts)
        elif op == "delete_row":
            b.delete_row(ck, ts)
        elif op == "delete_cols":
            b.delete_columns(ck, ["v", "tags"], ts)
        elif op == "delete_part":
            b.delete_partition(ts)
        elif op == "range":
            lo, hi = sorted(draw(st.lists(st.integers(0, 3), min_size=2, max_size=2)))
            b.delete_range(
                {"c1": lo},
                {"c1": hi},
                ts,
                start_inclusive=draw(st.booleans()),
                end_inclusive=draw(st.booleans()),
            )
        elif op == "tags":
            if draw(st.booleans()):
                b.add_elements(ck, "tags", draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=2)), ts)
            else:
                b.remove_elements(ck, "tags", ["a"], ts)
        elif op == "attrs":
            if draw(st.booleans()):
                b.add_elements(ck, "attrs", [(draw(st.sampled_from("pq")), draw(st.integers(0, 3)))], ts)
            elif draw(st.booleans()):
                b.update(ck, {"attrs": [("r", 1)]}, ts)  # overwrite: collection deletion + element
            else:
                b.remove_elements(ck, "attrs", ["p"], ts)
        elif op == "items":
            b.add_elements(ck, "items", draw(st.lists(st.integers(0, 9), min_size=1, max_size=2)), ts)
        else:
            b.insert(ck, {"v": "t"}, ts, ttl=draw(st.integers(1, 300)))
        out.extend(changes_of_update(b.build()))
    return out


@st.composite
def plain_workloads(draw: st.DrawFn, max_ops: int = 25) -> list[RowChange]:
    """Changes of ``ks.plain`` (no clustering, no collections)."""
    out: list[RowChange] = []
    for _ in range(draw(st.integers(1, max_ops))):
        b = UpdateBuilder(PLAIN, {"id": draw(st.integers(0, 4))}, now=NOW - draw(st.integers(0, 200)))
        ts = draw(st.integers(1, 30))
        op = draw(st.sampled_from(["insert", "update", "delete", "ttl"]))
        if op == "insert":
            b.insert(
                {},
                {
                    "name": draw(st.sampled_from(["a", "b"])),
                    "score": draw(st.sampled_from([0.5, -1.0])),
                    "at": ts,
                },
                ts,
            )
        elif op == "update":
            b.update({}, {"name": draw(st.sampled_from(["c", None]))}, ts)
        elif op == "delete":
            b.delete_partition(ts)
        else:
            b.insert({}, {"name": "t"}, ts, ttl=draw(st.integers(1, 300)))
        out.extend(changes_of_update(b.build()))
    return out
