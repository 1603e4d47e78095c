"""Quality configuration (``config/quality.yaml``): policies, plausibility windows and user rules.

Loading the configuration imports neither Great Expectations nor pandas: a Dagster code
location reads it at start-up. Structure and values are checked here; expectation names and
arguments are checked against Great Expectations when a table's suite is first built (see
:mod:`cdc_platform.quality.suites`).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

MS_PER_DAY = 86_400_000


class QualityConfigError(ValueError):
    """The quality configuration is malformed; the message names the file and the entry."""


class Policy(enum.StrEnum):
    """What an error-severity failure does to a table's batch."""

    QUARANTINE = "quarantine"  # failing rows go to quarantine, the rest goes on
    FAIL = "fail"  # the whole batch is rejected (BatchRejectedError)
    WARN = "warn"  # recorded only, every row goes on


class Severity(enum.StrEnum):
    ERROR = "error"  # applies the table's policy
    WARNING = "warning"  # recorded in the summary only


# Keys of a rule that are ours; every other key is an argument of the expectation.
RULE_KEYS = frozenset({"expectation", "severity", "description", "value_class"})
TABLE_KEYS = frozenset({"policy", "severity", "timestamps", "write_timestamps", "rules"})
DEFAULT_KEYS = TABLE_KEYS - {"rules"}
TIMESTAMP_KEYS = frozenset({"min", "max_ahead_days"})


@dataclass(frozen=True)
class Rule:
    """One configured expectation.

    Attributes:
        expectation: Great Expectations' snake_case name, e.g. ``expect_column_values_to_match_regex``.
        kwargs: its arguments (``column``, ``regex``, ``min_value``, ``row_condition``, ``mostly``, …),
            with Cassandra column names.
        severity: ``error`` applies the table's policy, ``warning`` only records.
        description: free text, kept as the expectation's notes.
        value_class: what a failing value is, as reported (defaults per expectation, e.g.
            "does not match the pattern"); never the value itself.
        where: location in the configuration, for error messages.
    """

    expectation: str
    kwargs: Mapping[str, Any]
    severity: Severity = Severity.ERROR
    description: str | None = None
    value_class: str | None = None
    where: str = ""

    @property
    def column(self) -> str | None:
        """The column the rule is about (``None`` for table-level and multi-column rules)."""
        column = self.kwargs.get("column")
        return column if isinstance(column, str) else None


@dataclass(frozen=True)
class TimestampWindow:
    """Plausible ``timestamp`` values and write times: ``[earliest, now + max_ahead]``.

    Attributes:
        earliest_ms: earliest plausible instant, milliseconds since the epoch.
        max_ahead_ms: how far past the validation time an instant may lie, in milliseconds.
    """

    earliest_ms: int = 0
    max_ahead_ms: int = 365 * MS_PER_DAY

    def bounds_ms(self, now_ms: int) -> tuple[int, int]:
        return self.earliest_ms, now_ms + self.max_ahead_ms


@dataclass(frozen=True)
class TableQuality:
    """The quality settings of one table (defaults merged with the table's own entry).

    Attributes:
        policy: what error-severity failures do to the batch.
        severity: severity of the checks generated from the schema.
        timestamps: the plausible window for ``timestamp`` columns (and write times).
        write_timestamps: also check cell, liveness and deletion write times against the window.
        rules: configured expectations, in file order.
    """

    policy: Policy = Policy.QUARANTINE
    severity: Severity = Severity.ERROR
    timestamps: TimestampWindow = field(default_factory=TimestampWindow)
    write_timestamps: bool = True
    rules: tuple[Rule, ...] = ()

    def fingerprint(self) -> str:
        """A stable text identifying everything a generated suite depends on."""
        return json.dumps(
            {
                "severity": self.severity.value,
                "write_timestamps": self.write_timestamps,
                "rules": [
                    [r.expectation, r.severity.value, r.description, r.value_class, jsonable(r.kwargs)]
                    for r in self.rules
                ],
            },
            sort_keys=True,
            default=repr,
        )


@dataclass(frozen=True)
class QualityConfig:
    """Validation settings for all tables: defaults plus per-table entries (``keyspace.table``).

    Attributes:
        defaults: settings of tables without an entry (their ``rules`` are empty).
        tables: per-table settings, keyed ``keyspace.table`` (names as stored, case-sensitive).
        source: where the configuration came from, for messages.
    """

    defaults: TableQuality = field(default_factory=TableQuality)
    tables: Mapping[str, TableQuality] = field(default_factory=dict)
    source: str = "<defaults>"

    def for_table(self, qualified_name: str) -> TableQuality:
        """The settings of ``keyspace.table`` (the defaults when it has no entry)."""
        return self.tables.get(qualified_name, self.defaults)

    @classmethod
    def from_file(cls, path: str | Path) -> QualityConfig:
        """Reads a YAML file (see ``config/quality.yaml``).

        Raises:
            QualityConfigError: the file cannot be read or is malformed.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise QualityConfigError(f"cannot read the quality configuration {path}: {exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise QualityConfigError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(data or {}, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> QualityConfig:
        """Builds the configuration from parsed YAML (``defaults``, ``tables``).

        Raises:
            QualityConfigError: unknown keys, bad policies or severities, malformed rules.
        """
        if not isinstance(data, Mapping):
            raise QualityConfigError(f"{source}: the quality configuration must be a mapping")
        _check_keys(data, {"version", "defaults", "tables"}, source, "top level")
        version = data.get("version", 1)
        if version != 1:
            raise QualityConfigError(f"{source}: unsupported version {version!r} (this code reads version 1)")
        raw_defaults = data.get("defaults") or {}
        _check_mapping(raw_defaults, source, "defaults")
        _check_keys(raw_defaults, DEFAULT_KEYS, source, "defaults")
        defaults = _table_quality(raw_defaults, TableQuality(), source, "defaults")
        raw_tables = data.get("tables") or {}
        _check_mapping(raw_tables, source, "tables")
        tables: dict[str, TableQuality] = {}
        for name, entry in raw_tables.items():
            where = f"tables.{name}"
            if not isinstance(name, str) or name.count(".") != 1 or not all(name.split(".")):
                raise QualityConfigError(f"{source}: {where}: table names are written keyspace.table")
            entry = entry or {}
            _check_mapping(entry, source, where)
            _check_keys(entry, TABLE_KEYS, source, where)
            tables[name] = _table_quality(entry, defaults, source, where)
        return cls(defaults=defaults, tables=tables, source=source)


# --------------------------------------------------------------------------------------------


def _check_mapping(value: Any, source: str, where: str) -> None:
    if not isinstance(value, Mapping):
        raise QualityConfigError(f"{source}: {where} must be a mapping, not {type(value).__name__}")


def _check_keys(
    value: Mapping[str, Any], allowed: frozenset[str] | set[str], source: str, where: str
) -> None:
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise QualityConfigError(f"{source}: {where}: unknown keys {unknown} (allowed: {sorted(allowed)})")


def _enum(cls: type[Policy] | type[Severity], value: Any, source: str, where: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = [m.value for m in cls]
        raise QualityConfigError(f"{source}: {where}: {value!r} is not one of {allowed}") from None


def _instant_ms(value: Any, source: str, where: str) -> int:
    """An instant as milliseconds since the epoch: an int (ms), a date, a datetime or ISO text."""
    if isinstance(value, bool):
        raise QualityConfigError(f"{source}: {where}: {value!r} is not an instant")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise QualityConfigError(f"{source}: {where}: {value!r} is not an ISO date or time") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1000)
    if isinstance(value, dt.date):
        return (value - dt.date(1970, 1, 1)).days * MS_PER_DAY
    raise QualityConfigError(f"{source}: {where}: {value!r} is not an instant")


def _window(value: Any, base: TimestampWindow, source: str, where: str) -> TimestampWindow:
    _check_mapping(value, source, where)
    _check_keys(value, TIMESTAMP_KEYS, source, where)
    out = base
    if "min" in value:
        out = replace(out, earliest_ms=_instant_ms(value["min"], source, f"{where}.min"))
    if "max_ahead_days" in value:
        days = value["max_ahead_days"]
        if isinstance(days, bool) or not isinstance(days, int | float) or days < 0:
            raise QualityConfigError(
                f"{source}: {where}.max_ahead_days: {days!r} is not a number of days ≥ 0"
            )
        out = replace(out, max_ahead_ms=int(days * MS_PER_DAY))
    return out


def _table_quality(entry: Mapping[str, Any], base: TableQuality, source: str, where: str) -> TableQuality:
    out = replace(base, rules=())
    if "policy" in entry:
        out = replace(out, policy=_enum(Policy, entry["policy"], source, f"{where}.policy"))
    if "severity" in entry:
        out = replace(out, severity=_enum(Severity, entry["severity"], source, f"{where}.severity"))
    if "timestamps" in entry:
        out = replace(
            out, timestamps=_window(entry["timestamps"], base.timestamps, source, f"{where}.timestamps")
        )
    if "write_timestamps" in entry:
        flag = entry["write_timestamps"]
        if not isinstance(flag, bool):
            raise QualityConfigError(f"{source}: {where}.write_timestamps: {flag!r} is not true or false")
        out = replace(out, write_timestamps=flag)
    raw_rules = entry.get("rules") or []
    if not isinstance(raw_rules, list):
        raise QualityConfigError(f"{source}: {where}.rules must be a list")
    rules = tuple(_rule(r, source, f"{where}.rules[{i}]") for i, r in enumerate(raw_rules))
    return replace(out, rules=rules)


def _rule(entry: Any, source: str, where: str) -> Rule:
    _check_mapping(entry, source, where)
    name = entry.get("expectation")
    if not isinstance(name, str) or not name.startswith("expect_") or name != name.lower():
        raise QualityConfigError(
            f"{source}: {where}: 'expectation' must be a Great Expectations name in snake_case, "
            f"e.g. expect_column_values_to_match_regex (got {name!r})"
        )
    for key in ("description", "value_class"):
        if key in entry and not isinstance(entry[key], str):
            raise QualityConfigError(f"{source}: {where}.{key} must be text")
    if "meta" in entry or "notes" in entry or "result_format" in entry:
        raise QualityConfigError(
            f"{source}: {where}: meta, notes and result_format are set by the platform; "
            "use description for notes"
        )
    kwargs = {str(k): v for k, v in entry.items() if k not in RULE_KEYS}
    column = kwargs.get("column")
    if column is not None and not isinstance(column, str):
        raise QualityConfigError(f"{source}: {where}.column must be a column name")
    return Rule(
        expectation=name,
        kwargs=kwargs,
        severity=_enum(Severity, entry.get("severity", "error"), source, f"{where}.severity"),
        description=entry.get("description"),
        value_class=entry.get("value_class"),
        where=f"{source}: {where}",
    )


def jsonable(value: Any) -> Any:
    """Expectation arguments as JSON values (dates as ISO text, tuples as lists)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value
