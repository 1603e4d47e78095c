"""Cases of the quality tests: a small table with every kind of column, and change builders."""

from __future__ import annotations

import uuid
from typing import Any

from cdc_platform.changes.records import CellChange, ChangeKind, ClusteringBound, RowChange

# The validation clock of these tests: 2026-06-01T00:00:00Z.
NOW_S = 1_780_272_000
NOW_MS = NOW_S * 1000
NOW_US = NOW_S * 1_000_000
DAY_MS = 86_400_000

SCHEMA_CQL = """
CREATE KEYSPACE qa WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};
CREATE TYPE qa.addr (street text, zip int);
CREATE TABLE qa.people (
    org text,
    id int,
    code ascii,
    email text,
    age tinyint,
    points int,
    born date,
    seen timestamp,
    at time,
    big bigint,
    score double,
    uid uuid,
    raw blob,
    tags set<text>,
    attrs map<text, int>,
    nums frozen<list<int>>,
    home frozen<addr>,
    note text static,
    PRIMARY KEY (org, id)
) WITH ID = 00000000-0000-1000-8000-00000000a001;
CREATE TABLE qa.events (
    day date,
    at timestamp,
    "_cdc_odd" text,
    PRIMARY KEY (day, at)
) WITH ID = 00000000-0000-1000-8000-00000000a002;
"""


def row(org: Any = "acme", id: Any = 1, *, ts: int = NOW_US - 1_000_000, **values: Any) -> RowChange:
    """An upsert of one row of qa.people writing ``values`` (simple columns: the value itself;
    ``tags``: set elements; ``attrs``: map entries as a dict)."""
    cells: list[CellChange] = []
    for name, value in values.items():
        if name == "tags":
            cells.extend(CellChange("tags", None, ts, path=e) for e in value)
        elif name == "attrs":
            cells.extend(CellChange("attrs", v, ts, path=k) for k, v in value.items())
        else:
            cells.append(CellChange(name, value, ts))
    return RowChange(
        ChangeKind.ROW,
        "qa",
        "people",
        {"org": org},
        {"id": id},
        tuple(cells),
        liveness_timestamp=ts,
        segment_id=1,
        position=100 + (id if isinstance(id, int) else 0),
    )


def static_row(org: Any = "acme", note: str = "n", ts: int = NOW_US - 1_000_000) -> RowChange:
    return RowChange(ChangeKind.STATIC_ROW, "qa", "people", {"org": org}, {}, (CellChange("note", note, ts),))


def partition_delete(org: Any = "acme", ts: int = NOW_US - 1_000_000) -> RowChange:
    return RowChange(
        ChangeKind.PARTITION_DELETE,
        "qa",
        "people",
        {"org": org},
        deletion_timestamp=ts,
        deletion_time=ts // 10**6,
    )


def range_delete(org: Any = "acme", start: Any = 1, end: Any = 5, ts: int = NOW_US - 1_000_000) -> RowChange:
    return RowChange(
        ChangeKind.RANGE_DELETE,
        "qa",
        "people",
        {"org": org},
        deletion_timestamp=ts,
        deletion_time=ts // 10**6,
        range_start=ClusteringBound({"id": start}, True),
        range_end=ClusteringBound({"id": end}, True),
    )


def good_rows(n: int) -> list[RowChange]:
    return [
        row(
            id=i,
            code="A1",
            email=f"user{i}@example.com",
            age=30,
            points=i,
            born=9000,
            seen=NOW_MS - DAY_MS,
            at=3_600_000_000_000,
            big=1 << 60,
            score=0.5,
            uid=uuid.UUID(int=i, version=4),
            raw=b"\x00\xff",
            tags=["x"],
            attrs={"k": 1},
            nums=[1, 2],
            home={"street": "Main", "zip": 1},
        )
        for i in range(n)
    ]
