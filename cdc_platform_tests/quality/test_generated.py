"""The suite generated from the schema catches each class of bad value, and passes good ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cdc_platform.changes.records import CellChange, ChangeKind, RowChange
from cdc_platform.quality import Failure, Validator
from cdc_platform.schema.model import Schema, Table
from cdc_platform.schema.values import EMPTY, InvalidValue
from cdc_platform_tests.quality.cases import (
    DAY_MS,
    NOW_MS,
    NOW_US,
    good_rows,
    partition_delete,
    range_delete,
    row,
    static_row,
)

MakeValidator = Callable[..., Validator]


def failures_of(outcome: object, change: RowChange) -> list[Failure]:
    for r in outcome.rejected:  # type: ignore[attr-defined]
        if r.change is change:
            return list(r.failures)
    raise AssertionError("the change was not rejected")


def test_good_rows_and_deletions_pass(make_validator: MakeValidator, people: Table) -> None:
    changes = [*good_rows(20), static_row(), partition_delete(), range_delete(), row(id=99)]
    outcome = make_validator().validate(people, changes)
    assert outcome.rejected == []
    assert outcome.accepted == changes
    s = outcome.summary
    assert s.success and not s.batch_failed and s.failed == []
    assert s.rows_checked == len(changes) and s.expectations_run > 20


def test_null_keys(make_validator: MakeValidator, people: Table) -> None:
    no_partition = row(org=None, id=1)
    no_clustering = row(id=None)
    deleted_partition_without_key = partition_delete(org=None)
    ok = [static_row(), partition_delete(), range_delete()]  # no clustering value, legitimately
    # The rows a row condition leaves out come first: reported indexes must stay batch positions.
    outcome = make_validator().validate(
        people, [*ok, no_partition, no_clustering, deleted_partition_without_key]
    )
    assert [r.change for r in outcome.rejected] == [
        no_partition,
        no_clustering,
        deleted_partition_without_key,
    ]
    assert failures_of(outcome, no_partition) == [
        Failure("expect_column_values_to_not_be_null", "org", "error", "missing key value")
    ]
    assert failures_of(outcome, no_clustering) == [
        Failure("expect_column_values_to_not_be_null", "id", "error", "missing key value")
    ]
    assert outcome.accepted == ok


@pytest.mark.parametrize(
    ("column", "value", "value_class"),
    [
        ("email", InvalidValue(b"\xff\xfe", "text is not valid UTF-8 at byte 0"), "not valid UTF-8 text"),
        ("code", InvalidValue(b"\xc3\xa9", "ascii value has a non-ASCII byte at 0"), "not valid ASCII text"),
        ("points", InvalidValue(b"\x01\x02\x03", "int needs 4 bytes, got 3"), "not a valid int value"),
        ("points", EMPTY, "not a valid int value"),
        ("seen", EMPTY, "not a valid timestamp value"),
        ("uid", InvalidValue(b"\x01", "uuid needs 16 bytes, got 1"), "not a valid uuid value"),
        ("nums", [1, EMPTY], "not a valid frozen<list<int>> value"),
        ("home", {"street": "Main", "zip": EMPTY}, "not a valid frozen<addr> value"),
        ("tags", [InvalidValue(b"\xff", "text is not valid UTF-8 at byte 0")], "not a valid set<text> value"),
        ("attrs", {"k": EMPTY}, "not a valid map<text, int> value"),
    ],
)
def test_malformed_values(
    make_validator: MakeValidator, people: Table, column: str, value: Any, value_class: str
) -> None:
    bad = row(id=7, **{column: value})
    changes = [*good_rows(3), bad]
    outcome = make_validator().validate(people, changes)
    assert failures_of(outcome, bad) == [
        Failure("expect_column_values_to_be_in_set", column, "error", value_class)
    ]
    assert len(outcome.rejected) == 1 and outcome.accepted == changes[:3]
    assert outcome.summary.failed == [
        Failure("expect_column_values_to_be_in_set", column, "error", value_class, 1)
    ]


def test_malformed_keys_are_reported_once(make_validator: MakeValidator, people: Table) -> None:
    bad_partition = row(org=InvalidValue(b"\xff", "text is not valid UTF-8 at byte 0"))
    empty_clustering = row(id=EMPTY)
    bad_bound = range_delete(end=InvalidValue(b"\x01", "int needs 4 bytes, got 1"))
    outcome = make_validator().validate(people, [bad_partition, empty_clustering, bad_bound])
    # Malformed, not missing: the not-null check skips flagged keys.
    assert failures_of(outcome, bad_partition) == [
        Failure("expect_column_values_to_be_in_set", "org", "error", "not valid UTF-8 text")
    ]
    assert failures_of(outcome, empty_clustering) == [
        Failure("expect_column_values_to_be_in_set", "id", "error", "not a valid int value")
    ]
    assert failures_of(outcome, bad_bound) == [
        Failure("expect_column_values_to_be_in_set", "id", "error", "not a valid int value")
    ]


def test_map_keys_and_list_cell_ids_are_checked(make_validator: MakeValidator, people: Table) -> None:
    bad_key = row(id=1, attrs={EMPTY: 1})
    outcome = make_validator().validate(people, [bad_key, row(id=2, attrs={"a": 1})])
    assert [r.change for r in outcome.rejected] == [bad_key]


@pytest.mark.parametrize(
    ("column", "value", "value_class"),
    [
        ("points", 1 << 40, "outside the int range"),
        ("age", 300, "outside the tinyint range"),
        ("age", -129, "outside the tinyint range"),
        ("born", -(1 << 40), "outside the date range"),
        ("at", -1, "outside the time range"),
        ("at", 86_400 * 10**9, "outside the time range"),
        ("big", 1 << 70, "outside the bigint range"),
        ("code", "é", "not valid ASCII text"),
    ],
)
def test_values_outside_their_type(
    make_validator: MakeValidator, people: Table, column: str, value: Any, value_class: str
) -> None:
    """Not reachable from decoded bytes, but from changes built by hand or by other stages."""
    bad = row(id=5, **{column: value})
    edge = row(id=6, age=-128, points=(1 << 31) - 1, at=86_400 * 10**9 - 1, big=-(1 << 63))
    outcome = make_validator().validate(people, [*good_rows(2), bad, edge])
    assert [r.change for r in outcome.rejected] == [bad]
    assert [f.value_class for f in failures_of(outcome, bad)] == [value_class]
    assert failures_of(outcome, bad)[0].column == column


def test_implausible_timestamps(make_validator: MakeValidator, people: Table) -> None:
    future = row(id=1, seen=NOW_MS + 400 * DAY_MS)
    before_epoch = row(id=2, seen=-5)
    near_future = row(id=3, seen=NOW_MS + 300 * DAY_MS)
    epoch = row(id=4, seen=0)
    outcome = make_validator().validate(people, [future, before_epoch, near_future, epoch])
    assert [r.change for r in outcome.rejected] == [future, before_epoch]
    assert failures_of(outcome, future) == [
        Failure(
            "expect_column_values_to_be_between",
            "seen",
            "error",
            "implausible timestamp (outside the configured window)",
        )
    ]


def test_timestamp_window_is_configurable(make_validator: MakeValidator, people: Table) -> None:
    old = row(id=1, seen=NOW_MS - 3000 * DAY_MS)  # 2018
    ahead = row(id=2, seen=NOW_MS + 20 * DAY_MS)
    v = make_validator(
        {"qa.people": {"timestamps": {"min": "2020-01-01T00:00:00Z", "max_ahead_days": 10}}},
        defaults={"write_timestamps": False},
    )
    outcome = v.validate(people, [old, ahead, row(id=3, seen=NOW_MS)])
    assert [r.change for r in outcome.rejected] == [old, ahead]


def test_window_moves_with_the_clock(schema: Schema, people: Table) -> None:
    from cdc_platform.quality import QualityConfig

    now = [NOW_MS / 1000]
    v = Validator(schema, QualityConfig(), clock=lambda: now[0])
    later = row(id=1, seen=NOW_MS + 400 * DAY_MS)
    assert len(v.validate(people, [later]).rejected) == 1
    now[0] += 100 * 86_400  # the same suite, another run: the bound is a run parameter
    assert v.validate(people, [later]).rejected == []


def test_implausible_write_times(make_validator: MakeValidator, people: Table) -> None:
    nanos = row(id=1, ts=NOW_US * 1000, email="a@b.c")  # a client writing nanoseconds
    negative = RowChange(
        ChangeKind.PARTITION_DELETE, "qa", "people", {"org": "x"}, deletion_timestamp=-(1 << 62)
    )
    fine = row(id=2, email="a@b.c")
    outcome = make_validator().validate(people, [nanos, negative, fine])
    assert [r.change for r in outcome.rejected] == [nanos, negative]
    assert failures_of(outcome, nanos) == [
        Failure(
            "expect_column_values_to_be_between",
            None,
            "error",
            "implausible write time (outside the configured window)",
        )
    ]
    off = make_validator(defaults={"write_timestamps": False})
    assert off.validate(people, [nanos, negative, fine]).rejected == []


def test_tombstones_and_unknown_columns_carry_no_value(make_validator: MakeValidator, people: Table) -> None:
    tombstone = RowChange(
        ChangeKind.ROW,
        "qa",
        "people",
        {"org": "a"},
        {"id": 1},
        (
            CellChange("email", None, NOW_US - 5, deleted=True),
            CellChange("tags", None, NOW_US - 5, deleted=True, collection_deletion=True),
            CellChange("dropped_col", InvalidValue(b"\x00", "unknown"), NOW_US - 5),
        ),
    )
    assert make_validator().validate(people, [tombstone]).rejected == []


def test_generated_severity_warning_only_records(make_validator: MakeValidator, people: Table) -> None:
    bad = row(id=1, points=EMPTY)
    outcome = make_validator(defaults={"severity": "warning"}).validate(people, [bad])
    assert outcome.accepted == [bad] and outcome.rejected == []
    assert outcome.summary.success
    assert outcome.summary.failed == [
        Failure("expect_column_values_to_be_in_set", "points", "warning", "not a valid int value", 1)
    ]


def test_columns_named_like_helpers(make_validator: MakeValidator, schema: Schema) -> None:
    events = schema.table("qa.events")
    changes = [
        RowChange(
            ChangeKind.ROW,
            "qa",
            "events",
            {"day": 20000},
            {"at": NOW_MS - 1},
            (CellChange("_cdc_odd", InvalidValue(b"\xff", "bad"), NOW_US - 1),),
        ),
        RowChange(
            ChangeKind.ROW,
            "qa",
            "events",
            {"day": 20000},
            {"at": NOW_MS},
            (CellChange("_cdc_odd", "ok", NOW_US),),
        ),
    ]
    outcome = make_validator().validate(events, changes)
    assert [r.change for r in outcome.rejected] == [changes[0]]
    assert failures_of(outcome, changes[0])[0].column == "_cdc_odd"
