"""config/quality.yaml: parsing, defaults, and the errors a user can act on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from cdc_platform.quality import Policy, QualityConfig, QualityConfigError, Severity, Validator
from cdc_platform.quality.suites import GxRuntime
from cdc_platform.workload import shop_schema

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "quality.yaml"


def test_the_shipped_config_parses_and_builds_for_the_shop_schema() -> None:
    config = QualityConfig.from_file(SHIPPED)
    customers = config.for_table("shop.customers")
    assert customers.policy is Policy.QUARANTINE
    email = next(r for r in customers.rules if r.column == "email")
    assert email.expectation == "expect_column_values_to_match_regex" and "@" in email.kwargs["regex"]
    assert any(r.column == "loyalty_points" and r.kwargs["min_value"] == 0 for r in customers.rules)
    inventory = config.for_table("shop.inventory")
    assert any(r.column == "quantity" and r.kwargs["min_value"] == 0 for r in inventory.rules)
    assert config.for_table("shop.sessions") == config.defaults
    assert config.defaults.timestamps.earliest_ms == 0
    assert config.defaults.timestamps.max_ahead_ms == 365 * 86_400_000
    # Every rule is a real Great Expectations expectation with valid arguments.
    runtime = GxRuntime()
    Validator(shop_schema(), config, runtime=runtime).prepare()
    assert runtime.suites_built == 5


def test_defaults_and_overrides() -> None:
    config = QualityConfig.from_dict(
        {
            "defaults": {"policy": "warn", "severity": "warning", "timestamps": {"min": dt.date(2000, 1, 1)}},
            "tables": {
                "ks.a": {"policy": "fail", "timestamps": {"max_ahead_days": 1}},
                "ks.b": None,
            },
        }
    )
    a, b = config.for_table("ks.a"), config.for_table("ks.b")
    assert (a.policy, a.severity) == (Policy.FAIL, Severity.WARNING)
    assert a.timestamps.earliest_ms == 946_684_800_000 and a.timestamps.max_ahead_ms == 86_400_000
    assert (b.policy, b.rules) == (Policy.WARN, ())
    assert config.for_table("ks.other").policy is Policy.WARN


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tables": {"ks.t": {"polcy": "warn"}}}, r"tables\.ks\.t: unknown keys \['polcy'\]"),
        ({"tables": {"ks.t": {"policy": "drop"}}}, r"tables\.ks\.t\.policy: 'drop' is not one of"),
        ({"defaults": {"severity": "fatal"}}, r"defaults\.severity: 'fatal' is not one of"),
        ({"tables": {"table_without_keyspace": {}}}, "keyspace.table"),
        ({"tables": {"ks.t": {"rules": [{"column": "x"}]}}}, r"rules\[0\]: 'expectation' must be"),
        (
            {"tables": {"ks.t": {"rules": [{"expectation": "ExpectColumnValuesToBeNull"}]}}},
            "snake_case",
        ),
        (
            {"tables": {"ks.t": {"rules": [{"expectation": "expect_x", "severity": "loud"}]}}},
            r"rules\[0\]\.severity",
        ),
        ({"tables": {"ks.t": {"rules": {"expectation": "expect_x"}}}}, r"rules must be a list"),
        ({"tables": {"ks.t": {"timestamps": {"min": "yesterday"}}}}, "not an ISO date"),
        ({"tables": {"ks.t": {"timestamps": {"max_ahead_days": -1}}}}, "max_ahead_days"),
        ({"tables": {"ks.t": {"write_timestamps": "yes"}}}, "write_timestamps"),
        ({"version": 2}, "unsupported version"),
        ({"tables": {"ks.t": {"rules": [{"expectation": "expect_x", "meta": {}}]}}}, "set by the platform"),
    ],
)
def test_malformed_config(data: dict[str, Any], message: str) -> None:
    with pytest.raises(QualityConfigError, match=message):
        QualityConfig.from_dict(data, source="q.yaml")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(QualityConfigError, match="cannot read"):
        QualityConfig.from_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tables: [unclosed\n")
    with pytest.raises(QualityConfigError, match=r"bad\.yaml: not valid YAML"):
        QualityConfig.from_file(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("tables:\n  ks.t:\n    policy: nope\n")
    with pytest.raises(QualityConfigError, match=r"wrong\.yaml: tables\.ks\.t\.policy"):
        QualityConfig.from_file(wrong)


def test_config_naming_a_table_missing_from_the_schema_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    Validator(shop_schema(), QualityConfig.from_dict({"tables": {"shop.gone": {"policy": "fail"}}}))
    assert "shop.gone, which is not in the schema" in caplog.text
