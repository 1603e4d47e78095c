"""The frame a suite validates: row i is change i; values typed so pandas stays vectorised."""

from __future__ import annotations

import uuid

import numpy as np

from cdc_platform.changes.records import CellChange, ChangeKind, RowChange
from cdc_platform.quality.frame import (
    KIND_COLUMN,
    OP_COLUMN,
    WRITE_TIMESTAMP_COLUMN,
    FrameLayout,
    build_frame,
)
from cdc_platform.schema.model import Schema, Table
from cdc_platform.schema.values import EMPTY, InvalidValue
from cdc_platform_tests.quality.cases import NOW_US, partition_delete, range_delete, row, static_row


def test_rows_follow_changes(people: Table) -> None:
    changes = [
        row(id=1, points=5),
        static_row(note="s"),
        partition_delete(org="b"),
        range_delete(),
        row(id=2),
    ]
    frame = build_frame(FrameLayout.of(people), changes)
    assert list(frame.index) == list(range(5))
    assert list(frame[KIND_COLUMN]) == ["row", "static_row", "partition_delete", "range_delete", "row"]
    assert list(frame[OP_COLUMN]) == ["upsert", "upsert", "partition_delete", "range_delete", "upsert"]
    assert list(frame["org"]) == ["acme", "acme", "b", "acme", "acme"]
    assert frame["id"].tolist()[:1] == [1.0] and np.isnan(frame["id"].tolist()[1])
    assert frame["note"].tolist()[1] == "s"
    assert frame[WRITE_TIMESTAMP_COLUMN].tolist() == [NOW_US - 1_000_000] * 5


def test_value_forms(people: Table) -> None:
    u = uuid.UUID(int=9, version=4)
    changes = [
        row(id=1, points=7, big=1 << 60, uid=u, score=1.5, tags=["b", "a"], attrs={"k": 1}, nums=[1, 2]),
        row(id=2, home={"street": "x", "zip": 3}),
    ]
    frame = build_frame(FrameLayout.of(people), changes)
    assert frame["points"].dtype == np.float64  # nulls and exact: float64 with NaN
    assert frame["id"].dtype == np.int64  # no nulls
    assert frame["big"].tolist()[0] == 1 << 60 and frame["big"].dtype == object  # beyond 2**53: exact ints
    assert frame["uid"].tolist()[0] == str(u)
    assert frame["tags"].tolist()[0] == ["b", "a"]
    assert frame["attrs"].tolist()[0] == [("k", 1)]
    assert frame["nums"].tolist()[0] == [1, 2]
    assert frame["home"].tolist()[1] == {"street": "x", "zip": 3}
    assert frame["score"].tolist()[0] == 1.5


def test_flags_mark_malformed_values(people: Table) -> None:
    changes = [
        row(id=1, email=InvalidValue(b"\xff", "bad")),
        row(id=2, points=EMPTY),
        row(id=3, email="fine", points=3),
    ]
    frame = build_frame(FrameLayout.of(people), changes)
    assert frame["_cdc_invalid__email"].tolist() == [True, False, False]
    assert frame["_cdc_invalid__points"].tolist() == [False, True, False]
    assert frame["email"].isna().tolist() == [True, True, False]  # the malformed value itself stays out
    assert "_cdc_invalid__raw" not in frame  # blobs cannot be malformed


def test_unread_columns_are_left_out(people: Table) -> None:
    layout = FrameLayout.of(people).reading({"email"})
    frame = build_frame(layout, [row(id=1, email="a@b", tags=["x"], note="secret", points=EMPTY)])
    assert "email" in frame and "org" in frame and "id" in frame
    assert "tags" not in frame and "note" not in frame and "points" not in frame
    assert frame["_cdc_invalid__points"].tolist() == [True]  # flags stay


def test_escaped_column_names(schema: Schema) -> None:
    events = schema.table("qa.events")
    change = RowChange(
        ChangeKind.ROW, "qa", "events", {"day": 1}, {"at": 2}, (CellChange("_cdc_odd", "v", NOW_US),)
    )
    frame = build_frame(FrameLayout.of(events), [change])
    assert frame["_cdc_col__cdc_odd"].tolist() == ["v"]
    assert frame["_cdc_invalid___cdc_odd"].tolist() == [False]
