"""No value ever reaches a summary, its metadata, an error message or the log."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest

from cdc_platform.quality import BatchRejectedError, Validator
from cdc_platform.schema.model import Table
from cdc_platform.schema.values import InvalidValue
from cdc_platform_tests.quality.cases import NOW_MS, good_rows, row

MakeValidator = Callable[..., Validator]

SECRET_EMAIL = "margaret.hamilton-1936-at-example.org"  # fails the e-mail rule
SECRET_SSN = "078-05-1120"
SECRET_CODE = "Zürich-7731"  # non-ASCII in an ascii column
SECRET_BYTES_REASON = "text is not valid UTF-8: 'grace.hopper.1906'"  # a decoder reason quoting a value
SECRETS = [SECRET_EMAIL, SECRET_SSN, "Zürich", "7731", "grace.hopper", "1906", "1936"]

RULES = [
    {"expectation": "expect_column_values_to_match_regex", "column": "email", "regex": r"^[^@\s]+@[^@\s]+$"},
    {
        "expectation": "expect_column_values_to_not_match_regex",
        "column": "note",
        "regex": r"\d{3}-\d{2}-\d{4}",
    },
    {"expectation": "expect_column_values_to_be_between", "column": "points", "max_value": 100},
    {"expectation": "expect_column_values_to_be_in_set", "column": "age", "value_set": [30, 31]},
]


def _planted() -> list:
    return [
        *good_rows(2),
        row(id=11, email=SECRET_EMAIL, points=19361120, age=77, seen=NOW_MS + 10**12),
        row(id=12, email=InvalidValue(SECRET_EMAIL.encode(), SECRET_BYTES_REASON), code=SECRET_CODE),
        row(id=13, note=f"ssn {SECRET_SSN}"),
    ]


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize("policy", ["quarantine", "warn"])
def test_summary_metadata_and_log_hold_no_values(
    make_validator: MakeValidator, people: Table, caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    v = make_validator({"qa.people": {"policy": policy, "rules": RULES}})
    caplog.set_level(logging.DEBUG)  # every logger, Great Expectations' included
    outcome = v.validate(people, _planted())
    s = outcome.summary
    # The planted values did fail: regex, not-regex, between, set, UTF-8, ASCII, timestamp.
    assert len(s.failed) == 7
    _assert_clean(str(s))
    _assert_clean(repr(s))
    _assert_clean(json.dumps(s.as_metadata()))
    _assert_clean(caplog.text)
    assert caplog.records  # the summary is logged (without values)
    for r in outcome.rejected:
        _assert_clean(repr(r))
        _assert_clean(repr(r.failures))
    if policy == "quarantine":
        assert [r.change.clustering["id"] for r in outcome.rejected] == [11, 12, 13]


def test_batch_rejection_holds_no_values(
    make_validator: MakeValidator, people: Table, caplog: pytest.LogCaptureFixture
) -> None:
    v = make_validator({"qa.people": {"policy": "fail", "rules": RULES}})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BatchRejectedError) as info:
        v.validate(people, _planted())
    _assert_clean(str(info.value))
    _assert_clean(repr(info.value.summary))
    _assert_clean(json.dumps(info.value.summary.as_metadata()))
    _assert_clean(caplog.text)


def test_the_secrets_are_really_there(people: Table) -> None:
    """Guards the test above: the planted values are in the changes, so absence means something."""
    text = repr(_planted())
    assert SECRET_EMAIL in text and SECRET_SSN in text and "Zürich" in text
