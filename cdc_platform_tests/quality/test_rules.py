"""Configured rules: any Great Expectations expectation by name, per table and column."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cdc_platform.quality import Failure, QualityConfigError, Validator
from cdc_platform.schema.model import Table
from cdc_platform_tests.quality.cases import DAY_MS, NOW_MS, good_rows, partition_delete, row

MakeValidator = Callable[..., Validator]

EMAIL = {
    "expectation": "expect_column_values_to_match_regex",
    "column": "email",
    "regex": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
}
POINTS = {"expectation": "expect_column_values_to_be_between", "column": "points", "min_value": 0}


def test_regex_and_between(make_validator: MakeValidator, people: Table) -> None:
    bad_email = row(id=1, email="nobody-at-example.com")
    negative = row(id=2, points=-3)
    both = row(id=3, email="x", points=-1)
    partial = row(id=4, age=40)  # writes neither column: nothing to judge
    changes = [*good_rows(3), bad_email, negative, both, partial]
    outcome = make_validator({"qa.people": {"rules": [EMAIL, POINTS]}}).validate(people, changes)
    regex = Failure("expect_column_values_to_match_regex", "email", "error", "does not match the pattern")
    between = Failure("expect_column_values_to_be_between", "points", "error", "outside the allowed range")
    assert [(r.change, r.failures) for r in outcome.rejected] == [
        (bad_email, [regex]),
        (negative, [between]),
        (both, [regex, between]),
    ]
    assert outcome.accepted == [*changes[:3], partial]
    assert outcome.summary.failed == [
        Failure(regex.expectation, "email", "error", regex.value_class, 2),
        Failure(between.expectation, "points", "error", between.value_class, 2),
    ]
    assert outcome.summary.expectations_failed == 2
    assert outcome.summary.rows_quarantined == 3


def test_rules_apply_to_their_table_only(make_validator: MakeValidator, people: Table) -> None:
    v = make_validator(
        {"qa.events": {"rules": [{"expectation": "expect_table_row_count_to_equal", "value": 0}]}}
    )
    assert v.validate(people, good_rows(2)).rejected == []


def test_value_class_and_description(make_validator: MakeValidator, people: Table) -> None:
    rule = {**EMAIL, "value_class": "not an e-mail address", "description": "one @ and a domain"}
    outcome = make_validator({"qa.people": {"rules": [rule]}}).validate(people, [row(email="x")])
    assert outcome.rejected[0].failures[0].value_class == "not an e-mail address"


def test_warning_rules_only_record(make_validator: MakeValidator, people: Table) -> None:
    changes = [row(id=1, email="x"), row(id=2, points=-1)]
    v = make_validator({"qa.people": {"rules": [{**EMAIL, "severity": "warning"}, POINTS]}})
    outcome = v.validate(people, changes)
    assert [r.change for r in outcome.rejected] == [changes[1]]
    assert outcome.accepted == [changes[0]]
    assert [(f.severity, f.rows) for f in outcome.summary.failed] == [("warning", 1), ("error", 1)]
    only_warning = v.validate(people, [changes[0]])
    assert only_warning.rejected == [] and only_warning.summary.success
    assert only_warning.summary.expectations_failed == 1


def test_a_rejected_row_lists_its_warnings_too(make_validator: MakeValidator, people: Table) -> None:
    bad = row(id=1, email="x", points=-1)
    v = make_validator({"qa.people": {"rules": [{**EMAIL, "severity": "warning"}, POINTS]}})
    (rejection,) = v.validate(people, [bad]).rejected
    assert [(f.column, f.severity) for f in rejection.failures] == [("email", "warning"), ("points", "error")]


def test_dates_in_bounds_of_date_and_timestamp_columns(make_validator: MakeValidator, people: Table) -> None:
    rules = [
        {"expectation": "expect_column_values_to_be_between", "column": "born", "min_value": "1900-01-01"},
        {
            "expectation": "expect_column_values_to_be_between",
            "column": "seen",
            "min_value": "2026-01-01T00:00:00Z",
        },
    ]
    old_birth = row(id=1, born=-30000)  # 1887
    old_visit = row(id=2, seen=NOW_MS - 200 * DAY_MS)  # 2025-11
    fine = row(id=3, born=0, seen=NOW_MS)
    outcome = make_validator({"qa.people": {"rules": rules}}).validate(people, [old_birth, old_visit, fine])
    assert [(r.change, r.failures[0].column) for r in outcome.rejected] == [
        (old_birth, "born"),
        (old_visit, "seen"),
    ]


def test_mostly_lets_a_few_through(make_validator: MakeValidator, people: Table) -> None:
    changes = [*good_rows(9), row(id=50, email="x")]
    v = make_validator({"qa.people": {"rules": [{**EMAIL, "mostly": 0.8}]}})
    outcome = v.validate(people, changes)
    assert outcome.rejected == [] and outcome.summary.success and outcome.summary.failed == []


def test_row_condition_on_helper_columns(make_validator: MakeValidator, people: Table) -> None:
    rule = {
        "expectation": "expect_column_values_to_not_be_null",
        "column": "email",
        "row_condition": '_cdc_kind == "row"',
    }
    without_email = row(id=1, age=3)
    outcome = make_validator({"qa.people": {"rules": [rule]}}).validate(
        people, [without_email, row(id=2, email="a@b.c"), partition_delete()]
    )
    assert [r.change for r in outcome.rejected] == [without_email]
    assert outcome.rejected[0].failures == [
        Failure("expect_column_values_to_not_be_null", "email", "error", "missing (null)")
    ]


def test_column_pair_rule(make_validator: MakeValidator, people: Table) -> None:
    rule = {
        "expectation": "expect_column_pair_values_a_to_be_greater_than_b",
        "column_A": "points",
        "column_B": "age",
    }
    low = row(id=1, points=1, age=5)
    outcome = make_validator({"qa.people": {"rules": [rule]}}).validate(
        people, [low, row(id=2, points=9, age=5)]
    )
    assert [r.change for r in outcome.rejected] == [low]
    assert outcome.rejected[0].failures[0].column == "points,age"


def test_table_level_rule_fails_the_whole_batch(make_validator: MakeValidator, people: Table) -> None:
    rule = {"expectation": "expect_table_row_count_to_be_between", "max_value": 2}
    changes = good_rows(3)
    outcome = make_validator({"qa.people": {"rules": [rule]}}).validate(people, changes)
    assert outcome.accepted == [] and [r.change for r in outcome.rejected] == changes
    assert outcome.summary.batch_failed and not outcome.summary.success
    failure = Failure(
        "expect_table_row_count_to_be_between", None, "error", "fails expect_table_row_count_to_be_between"
    )
    assert all(r.failures == [failure] for r in outcome.rejected)
    assert outcome.summary.failed == [failure]


def test_aggregate_rule_with_warning_severity(make_validator: MakeValidator, people: Table) -> None:
    rule = {
        "expectation": "expect_column_mean_to_be_between",
        "column": "points",
        "max_value": 0,
        "severity": "warning",
        "value_class": "mean too high",
    }
    changes = good_rows(3)
    outcome = make_validator({"qa.people": {"rules": [rule]}}).validate(people, changes)
    assert outcome.accepted == changes and not outcome.summary.batch_failed and outcome.summary.success
    assert outcome.summary.failed == [
        Failure("expect_column_mean_to_be_between", "points", "warning", "mean too high")
    ]


def test_a_rule_that_cannot_be_evaluated_fails_the_batch(
    make_validator: MakeValidator, people: Table
) -> None:
    # Numbers compared with text raise inside Great Expectations: not a silent pass.
    rule = {"expectation": "expect_column_values_to_be_between", "column": "email", "min_value": 0}
    outcome = make_validator({"qa.people": {"rules": [rule]}}).validate(people, good_rows(2))
    assert outcome.summary.batch_failed and len(outcome.rejected) == 2
    assert outcome.summary.failed == [
        Failure("expect_column_values_to_be_between", "email", "error", "could not be evaluated")
    ]


def test_unknown_column_is_a_config_error(make_validator: MakeValidator) -> None:
    with pytest.raises(QualityConfigError, match=r"tables\.qa\.people\.rules\[0\].*no column 'mail'"):
        make_validator({"qa.people": {"rules": [{**EMAIL, "column": "mail"}]}})


def test_unknown_expectation_is_a_config_error(make_validator: MakeValidator, people: Table) -> None:
    v = make_validator(
        {"qa.people": {"rules": [{"expectation": "expect_column_values_to_be_nice", "column": "email"}]}}
    )
    with pytest.raises(QualityConfigError, match="no expectation 'expect_column_values_to_be_nice'"):
        v.validate(people, good_rows(1))
    with pytest.raises(QualityConfigError, match="no expectation"):
        v.prepare([people])


def test_bad_arguments_are_a_config_error(make_validator: MakeValidator, people: Table) -> None:
    v = make_validator({"qa.people": {"rules": [{**POINTS, "min_valu": 0}]}})
    with pytest.raises(
        QualityConfigError, match=r"rules\[0\].*bad arguments for expect_column_values_to_be_between"
    ):
        v.validate(people, good_rows(1))
