"""Per-table policies: quarantine, fail, warn; and what the summary says about each."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from cdc_platform.quality import BatchRejectedError, Validator
from cdc_platform.schema.model import Schema, Table
from cdc_platform_tests.quality.cases import good_rows, row

MakeValidator = Callable[..., Validator]
POINTS = {"expectation": "expect_column_values_to_be_between", "column": "points", "min_value": 0}


def _batch() -> list:
    changes = good_rows(4)
    changes.insert(2, row(id=10, points=-1))
    return changes


def test_quarantine_rejects_failing_rows_and_passes_the_rest(
    make_validator: MakeValidator, people: Table
) -> None:
    changes = _batch()
    outcome = make_validator({"qa.people": {"policy": "quarantine", "rules": [POINTS]}}).validate(
        people, changes
    )
    assert [r.change for r in outcome.rejected] == [changes[2]]
    assert outcome.accepted == changes[:2] + changes[3:]
    s = outcome.summary
    assert (s.policy, s.rows_checked, s.rows_quarantined, s.success, s.batch_failed) == (
        "quarantine",
        5,
        1,
        False,
        False,
    )


def test_fail_raises_with_the_summary(make_validator: MakeValidator, people: Table) -> None:
    v = make_validator({"qa.people": {"policy": "fail", "rules": [POINTS]}})
    with pytest.raises(BatchRejectedError, match="batch rejected by the quality policy 'fail'") as info:
        v.validate(people, _batch())
    s = info.value.summary
    assert s.batch_failed and not s.success and s.rows_quarantined == 0
    assert [(f.column, f.rows) for f in s.failed] == [("points", 1)]
    assert "qa.people" in str(info.value) and "points" in str(info.value)


def test_fail_passes_clean_batches_and_warnings(make_validator: MakeValidator, people: Table) -> None:
    v = make_validator({"qa.people": {"policy": "fail", "rules": [{**POINTS, "severity": "warning"}]}})
    changes = _batch()
    outcome = v.validate(people, changes)
    assert outcome.accepted == changes and outcome.rejected == []
    assert outcome.summary.success and not outcome.summary.batch_failed
    assert outcome.summary.failed[0].severity == "warning"


def test_warn_accepts_everything_and_records(make_validator: MakeValidator, people: Table) -> None:
    changes = _batch()
    outcome = make_validator({"qa.people": {"policy": "warn", "rules": [POINTS]}}).validate(people, changes)
    assert outcome.accepted == changes and outcome.rejected == []
    s = outcome.summary
    assert not s.success and not s.batch_failed and s.rows_quarantined == 0
    assert [(f.expectation, f.column, f.severity, f.rows) for f in s.failed] == [
        ("expect_column_values_to_be_between", "points", "error", 1)
    ]


def test_default_policy_applies_to_unlisted_tables(make_validator: MakeValidator, people: Table) -> None:
    v = make_validator({"qa.events": {"policy": "quarantine"}}, defaults={"policy": "fail"})
    with pytest.raises(BatchRejectedError):
        v.validate(people, [row(org=None)])


def test_empty_batch(make_validator: MakeValidator, people: Table) -> None:
    outcome = make_validator({"qa.people": {"policy": "fail", "rules": [POINTS]}}).validate(people, [])
    assert outcome.accepted == [] and outcome.rejected == []
    assert outcome.summary.success and outcome.summary.rows_checked == 0


def test_changes_of_another_table_are_refused(make_validator: MakeValidator, schema: Schema) -> None:
    events = schema.table("qa.events")
    with pytest.raises(ValueError, match=r"change for qa\.people in a batch of qa\.events"):
        make_validator().validate(events, [row()])


def test_metadata_is_json_and_complete(make_validator: MakeValidator, people: Table) -> None:
    outcome = make_validator({"qa.people": {"rules": [POINTS]}}).validate(people, _batch())
    meta = outcome.summary.as_metadata()
    assert json.loads(json.dumps(meta)) == meta
    assert meta["table"] == "qa.people" and meta["policy"] == "quarantine"
    assert meta["rows_checked"] == 5 and meta["rows_quarantined"] == 1
    assert meta["expectations_run"] == outcome.summary.expectations_run > 20
    assert meta["expectations_failed"] == 1 and meta["success"] is False and meta["batch_failed"] is False
    assert meta["failed"] == [
        {
            "expectation": "expect_column_values_to_be_between",
            "column": "points",
            "severity": "error",
            "value_class": "outside the allowed range",
            "rows": 1,
        }
    ]
    assert meta["seconds"] > 0
