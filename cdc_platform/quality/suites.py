"""Expectation suites: generated from the Cassandra schema plus configured rules, built in GX once.

:func:`suite_specs` is pure (no Great Expectations import): it lists what a table's suite
checks. :class:`GxRuntime` turns a list of specs into Great Expectations objects — one
ephemeral context per process with a pandas datasource, and per table a dataframe asset, a
whole-dataframe batch definition, an expectation suite and a validation definition — builds
each once, caches it by table layout and configuration, and runs it on each batch's frame.

Generated checks, per table:

- partition-key columns are non-null; clustering columns are non-null on ``row`` changes
  (GX ``expect_column_values_to_not_be_null`` with a row condition; a key that is present but
  malformed is reported by the next check instead);
- no malformed values (``_cdc_invalid__<column>`` is false): bytes that did not decode
  (``InvalidValue``: invalid UTF-8 or ASCII text, wrong lengths, …) or ``EMPTY`` values;
- integer-like values within their CQL type's range (tinyint, smallint, int, bigint, counter,
  date, time), ascii text within 7 bits;
- ``timestamp`` values, and optionally write times, within the plausible window
  (``[earliest, now + max_ahead]``, passed per run as expectation parameters so a long-lived
  process does not need rebuilding as time passes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import numbers
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cdc_platform.quality.config import MS_PER_DAY, QualityConfigError, Rule, Severity, TableQuality, jsonable
from cdc_platform.quality.frame import (
    INTEGER_RANGES,
    KIND_COLUMN,
    OP_COLUMN,
    WRITE_TIMESTAMP_COLUMN,
    FrameLayout,
    Slot,
)
from cdc_platform.schema.model import Column, ColumnKind, Table
from cdc_platform.schema.types import NativeType

log = logging.getLogger(__name__)

# Expectation parameters passed on every run (``{"$PARAMETER": name}`` in a rule uses them too).
TIMESTAMP_MIN = "cdc_timestamp_min_ms"
TIMESTAMP_MAX = "cdc_timestamp_max_ms"
WRITE_TIME_MIN = "cdc_write_time_min_us"
WRITE_TIME_MAX = "cdc_write_time_max_us"

HELPER_COLUMNS = frozenset({KIND_COLUMN, OP_COLUMN, WRITE_TIMESTAMP_COLUMN})
COLUMN_ARGUMENTS = ("column", "column_A", "column_B")
COLUMN_LIST_ARGUMENTS = ("column_list",)

# What a failing value is, per expectation, when the rule does not say.
VALUE_CLASSES: dict[str, str] = {
    "expect_column_values_to_match_regex": "does not match the pattern",
    "expect_column_values_to_match_regex_list": "does not match the patterns",
    "expect_column_values_to_not_match_regex": "matches a forbidden pattern",
    "expect_column_values_to_not_match_regex_list": "matches a forbidden pattern",
    "expect_column_values_to_match_like_pattern": "does not match the pattern",
    "expect_column_values_to_be_between": "outside the allowed range",
    "expect_column_values_to_not_be_null": "missing (null)",
    "expect_column_values_to_be_null": "present where it must be null",
    "expect_column_values_to_be_in_set": "not in the allowed set",
    "expect_column_values_to_not_be_in_set": "in the forbidden set",
    "expect_column_value_lengths_to_be_between": "length outside the allowed range",
    "expect_column_value_lengths_to_equal": "wrong length",
    "expect_column_values_to_be_unique": "duplicate value",
    "expect_column_values_to_be_of_type": "unexpected type",
    "expect_column_values_to_be_in_type_list": "unexpected type",
    "expect_column_values_to_match_strftime_format": "does not match the date format",
    "expect_column_values_to_be_dateutil_parseable": "not a parseable date",
    "expect_column_values_to_be_json_parseable": "not valid JSON",
    "expect_column_values_to_be_increasing": "out of order",
    "expect_column_values_to_be_decreasing": "out of order",
    "expect_column_pair_values_to_be_equal": "the two columns differ",
    "expect_column_pair_values_a_to_be_greater_than_b": "not greater than the other column",
    "expect_column_pair_values_to_be_in_set": "pair not in the allowed set",
    "expect_compound_columns_to_be_unique": "duplicate combination",
    "expect_select_column_values_to_be_unique_within_record": "repeated within the record",
    "expect_multicolumn_sum_to_equal": "columns do not add up",
}


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation of a table's suite, before it is built in Great Expectations.

    Attributes:
        expectation: Great Expectations' snake_case name.
        kwargs: its arguments, with frame column names; ``{"$PARAMETER": name}`` values are
            filled per run.
        column: the Cassandra column(s) reported on failure (``None`` for table-level checks).
        severity: ``error`` or ``warning``.
        value_class: what a failing value is, as reported (never the value).
        origin: ``schema`` for generated checks, else where the rule is configured.
        when: the row condition, an AND of ``column == value`` equalities (generated checks).
        notes: the rule's description.
    """

    expectation: str
    kwargs: Mapping[str, Any]
    column: str | None
    severity: Severity
    value_class: str
    origin: str = "schema"
    when: tuple[tuple[str, Any], ...] = ()
    notes: str | None = None

    def identity(self) -> list[Any]:
        return [
            self.expectation,
            jsonable(self.kwargs),
            self.column,
            self.severity.value,
            self.value_class,
            [list(w) for w in self.when],
            self.notes,
        ]


def _type_name(column: Column) -> str | None:
    t = column.type
    return t.name if isinstance(t, NativeType) else None


def malformed_value_class(column: Column) -> str:
    """How a malformed value of ``column`` is reported."""
    name = _type_name(column)
    if name == "text":
        return "not valid UTF-8 text"
    if name == "ascii":
        return "not valid ASCII text"
    return f"not a valid {column.type.cql()} value"


def suite_specs(table: Table, layout: FrameLayout, settings: TableQuality) -> list[ExpectationSpec]:
    """The expectations of ``table``'s suite: generated checks, then configured rules.

    Raises:
        QualityConfigError: a rule names a column the table does not have.
    """
    sev = settings.severity
    specs: list[ExpectationSpec] = []
    for slot in layout.keys:
        when: list[tuple[str, Any]] = []
        if slot.column.kind is ColumnKind.CLUSTERING:
            when.append((KIND_COLUMN, "row"))
        if slot.flag is not None:
            when.append((slot.flag, False))
        specs.append(
            ExpectationSpec(
                "expect_column_values_to_not_be_null",
                {"column": slot.field},
                slot.column.name,
                sev,
                "missing key value",
                when=tuple(when),
            )
        )
    for slot in layout.slots:
        if slot.flag is not None:
            specs.append(
                ExpectationSpec(
                    "expect_column_values_to_be_in_set",
                    {"column": slot.flag, "value_set": [False]},
                    slot.column.name,
                    sev,
                    malformed_value_class(slot.column),
                )
            )
    for slot in layout.slots:
        if slot.multicell or slot.nested:
            continue
        name = _type_name(slot.column)
        if name in INTEGER_RANGES:
            low, high = INTEGER_RANGES[name]
            specs.append(
                ExpectationSpec(
                    "expect_column_values_to_be_between",
                    {"column": slot.field, "min_value": low, "max_value": high},
                    slot.column.name,
                    sev,
                    f"outside the {name} range",
                )
            )
        elif name == "ascii":
            specs.append(
                ExpectationSpec(
                    "expect_column_values_to_match_regex",
                    {"column": slot.field, "regex": r"^[\x00-\x7f]*$"},
                    slot.column.name,
                    sev,
                    "not valid ASCII text",
                )
            )
        elif name == "timestamp":
            specs.append(
                ExpectationSpec(
                    "expect_column_values_to_be_between",
                    {
                        "column": slot.field,
                        "min_value": {"$PARAMETER": TIMESTAMP_MIN},
                        "max_value": {"$PARAMETER": TIMESTAMP_MAX},
                    },
                    slot.column.name,
                    sev,
                    "implausible timestamp (outside the configured window)",
                )
            )
    if settings.write_timestamps:
        specs.append(
            ExpectationSpec(
                "expect_column_values_to_be_between",
                {
                    "column": WRITE_TIMESTAMP_COLUMN,
                    "min_value": {"$PARAMETER": WRITE_TIME_MIN},
                    "max_value": {"$PARAMETER": WRITE_TIME_MAX},
                },
                None,
                sev,
                "implausible write time (outside the configured window)",
            )
        )
    specs.extend(_rule_spec(table, layout, rule) for rule in settings.rules)
    return specs


def _frame_column(table: Table, layout: FrameLayout, name: Any, rule: Rule) -> str:
    if not isinstance(name, str):
        raise QualityConfigError(f"{rule.where}: column names must be text, got {name!r}")
    if name in HELPER_COLUMNS:
        return name
    from cdc_platform.changes.arrow import field_name

    if name not in table.by_name:
        raise QualityConfigError(
            f"{rule.where}: table {table.qualified_name} has no column {name!r} "
            f"(columns: {sorted(table.by_name)})"
        )
    return field_name(name)


def _temporal(slot: Slot | None, value: Any) -> Any:
    """Dates and times in a rule on a timestamp or date column, as the frame holds them."""
    if slot is None or isinstance(value, bool | int | float | dict) or value is None:
        return value
    name = _type_name(slot.column)
    if name not in ("timestamp", "date"):
        return value
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        ms = int(value.timestamp() * 1000)
        return ms if name == "timestamp" else ms // MS_PER_DAY
    if isinstance(value, dt.date):
        days = (value - dt.date(1970, 1, 1)).days
        return days * MS_PER_DAY if name == "timestamp" else days
    return value


def _rule_spec(table: Table, layout: FrameLayout, rule: Rule) -> ExpectationSpec:
    kwargs = dict(rule.kwargs)
    reported: list[str] = []
    for key in COLUMN_ARGUMENTS:
        if key in kwargs:
            reported.append(kwargs[key])
            kwargs[key] = _frame_column(table, layout, kwargs[key], rule)
    for key in COLUMN_LIST_ARGUMENTS:
        if key in kwargs:
            names = kwargs[key]
            if not isinstance(names, list):
                raise QualityConfigError(f"{rule.where}: {key} must be a list of column names")
            reported.extend(names)
            kwargs[key] = [_frame_column(table, layout, n, rule) for n in names]
    slot = layout.slot(rule.column) if rule.column is not None else None
    for key in ("min_value", "max_value", "value"):
        if key in kwargs:
            kwargs[key] = _temporal(slot, kwargs[key])
    if "value_set" in kwargs and isinstance(kwargs["value_set"], list):
        kwargs["value_set"] = [_temporal(slot, v) for v in kwargs["value_set"]]
    return ExpectationSpec(
        rule.expectation,
        kwargs,
        ",".join(reported) if reported else None,
        rule.severity,
        rule.value_class or VALUE_CLASSES.get(rule.expectation, f"fails {rule.expectation}"),
        origin=rule.where,
        notes=rule.description,
    )


# Table-level expectations that do not look at the frame's columns.
COLUMNLESS_EXPECTATIONS = frozenset(
    {"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"}
)


def fields_read(specs: list[ExpectationSpec]) -> set[str] | None:
    """The frame columns the specs read, or ``None`` when that cannot be told (all columns).

    A pandas row condition may name any column, and table-level expectations such as
    ``expect_table_columns_to_match_set`` look at all of them.
    """
    out: set[str] = set()
    for spec in specs:
        kwargs = spec.kwargs
        if kwargs.get("row_condition") is not None:
            return None
        named = [kwargs[k] for k in COLUMN_ARGUMENTS if k in kwargs]
        for k in COLUMN_LIST_ARGUMENTS:
            named.extend(kwargs.get(k) or [])
        if not named and spec.expectation not in COLUMNLESS_EXPECTATIONS:
            return None
        out.update(n for n in named if isinstance(n, str))
    return out


def run_parameters(settings: TableQuality, now_ms: int) -> dict[str, int]:
    """The expectation parameters of one run: the plausible window as of ``now_ms``."""
    low, high = settings.timestamps.bounds_ms(now_ms)
    return {TIMESTAMP_MIN: low, TIMESTAMP_MAX: high, WRITE_TIME_MIN: low * 1000, WRITE_TIME_MAX: high * 1000}


def suite_key(layout: FrameLayout, specs: list[ExpectationSpec]) -> str:
    """Identifies a built suite: the table, its frame columns and every spec."""
    text = json.dumps(
        [layout.table, layout.columns(), [s.identity() for s in specs]], sort_keys=True, default=repr
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Great Expectations (imported here lazily: importing it takes seconds)


@dataclass(frozen=True)
class CheckResult:
    """What one expectation found in one batch, without any value.

    Attributes:
        spec: the expectation.
        success: Great Expectations' verdict (``mostly`` included).
        rows: failing row positions for row-level expectations; ``None`` when the expectation
            concerns the batch as a whole (table-level, aggregates) or could not be evaluated.
        unexpected_count: how many values failed, when Great Expectations counts them.
        errored: the expectation raised instead of evaluating.
    """

    spec: ExpectationSpec
    success: bool
    rows: list[int] | None
    unexpected_count: int | None
    errored: bool = False


@dataclass
class BuiltSuite:
    """A table's suite as built in Great Expectations (reused for every batch)."""

    key: str
    name: str
    specs: list[ExpectationSpec]
    validation: Any  # great_expectations.ValidationDefinition


# Row-level results with unexpected index lists, never the values (which may be PII).
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [],
    "return_unexpected_index_query": False,
    "exclude_unexpected_values": True,
    "partial_unexpected_count": 0,
}


@dataclass
class GxRuntime:
    """The process's Great Expectations objects: one ephemeral context, suites built once.

    Attributes:
        contexts_built: how many contexts this runtime created (1 after first use).
        suites_built: how many suites (with their asset, batch and validation definitions)
            this runtime created.
    """

    contexts_built: int = 0
    suites_built: int = 0
    _context: Any = None
    _suites: dict[str, BuiltSuite] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def context(self) -> Any:
        """The ephemeral context with the pandas datasource (created on first use)."""
        with self._lock:
            if self._context is None:
                import great_expectations as gx
                from great_expectations.data_context.types.base import (
                    DataContextConfig,
                    InMemoryStoreBackendDefaults,
                    ProgressBarsConfig,
                )

                config = DataContextConfig(
                    store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                    progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
                    analytics_enabled=False,
                )
                context = gx.get_context(mode="ephemeral", project_config=config)
                context.data_sources.add_pandas("cdc_platform")
                self._context = context
                self.contexts_built += 1
            return self._context

    def suite(self, table: str, layout: FrameLayout, specs: list[ExpectationSpec]) -> BuiltSuite:
        """The built suite for these specs (built on first request, then reused).

        Raises:
            QualityConfigError: a rule names no Great Expectations expectation, or its
                arguments are not that expectation's.
        """
        key = suite_key(layout, specs)
        with self._lock:
            built = self._suites.get(key)
            if built is None:
                built = self._build(table, key, specs)
                self._suites[key] = built
                self.suites_built += 1
            return built

    def _build(self, table: str, key: str, specs: list[ExpectationSpec]) -> BuiltSuite:
        import great_expectations as gx
        from great_expectations.exceptions import ExpectationNotFoundError
        from great_expectations.expectations.registry import get_expectation_impl

        expectations = []
        for i, spec in enumerate(specs):
            try:
                cls = get_expectation_impl(spec.expectation)
            except ExpectationNotFoundError:
                raise QualityConfigError(
                    f"{spec.origin}: Great Expectations has no expectation {spec.expectation!r}"
                ) from None
            kwargs = dict(spec.kwargs)
            condition = _condition(spec.when, kwargs.get("row_condition"))
            if condition is not None:
                kwargs["row_condition"] = condition
            try:
                expectations.append(cls(**kwargs, meta={"cdc_index": i}, notes=spec.notes))
            except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
                raise QualityConfigError(
                    f"{spec.origin}: bad arguments for {spec.expectation}: {exc}".replace("\n", "; ")
                ) from None
        context = self.context()
        name = f"{table}#{key}"
        datasource = context.data_sources.get("cdc_platform")
        asset = datasource.add_dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe("batch")
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        log.debug("built the expectation suite of %s (%d expectations)", table, len(specs))
        return BuiltSuite(key, name, specs, validation)

    def run(self, built: BuiltSuite, frame: Any, parameters: Mapping[str, Any]) -> list[CheckResult]:
        """Validates ``frame`` with ``built``; one result per spec, in spec order."""
        with self._lock:
            outcome = built.validation.run(
                batch_parameters={"dataframe": frame},
                expectation_parameters=dict(parameters),
                result_format=dict(RESULT_FORMAT),
            )
        results: list[CheckResult | None] = [None] * len(built.specs)
        for res in outcome.results:
            i = res.expectation_config.meta["cdc_index"]
            results[i] = _check_result(built.specs[i], res)
        missing = [built.specs[i].expectation for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"Great Expectations returned no result for {missing} of {built.name}")
        return [r for r in results if r is not None]


def _condition(when: tuple[tuple[str, Any], ...], configured: Any) -> Any:
    from great_expectations.expectations.row_conditions import Column as GxColumn
    from great_expectations.expectations.row_conditions import PassThroughCondition

    if isinstance(configured, str):
        # pandas query text, as GX's deprecated string form means it (without the warning).
        return PassThroughCondition(pass_through_filter=configured)
    if configured is not None or not when:
        return configured
    condition: Any = None
    for column, value in when:
        part = GxColumn(column) == value
        condition = part if condition is None else condition & part
    return condition


def _raised(exception_info: Any) -> bool:
    if not isinstance(exception_info, Mapping):
        return False
    if "raised_exception" in exception_info:
        return bool(exception_info["raised_exception"])
    return any(isinstance(v, Mapping) and v.get("raised_exception") for v in exception_info.values())


def _check_result(spec: ExpectationSpec, res: Any) -> CheckResult:
    result = res.result or {}
    count = result.get("unexpected_count")
    if _raised(res.exception_info):
        return CheckResult(spec, False, None, None, errored=True)
    indexes = result.get("unexpected_index_list")
    rows: list[int] | None = None
    if indexes is not None:
        rows = []
        for entry in indexes:
            if isinstance(entry, Mapping):
                # Index columns were asked for none; GX still wraps some multi-column results.
                entry = entry.get("index", next(iter(entry.values()), None))
            if isinstance(entry, numbers.Integral) and not isinstance(entry, bool):
                rows.append(int(entry))
            else:
                rows = None  # not a row position: treat as a batch-level result
                break
    return CheckResult(spec, bool(res.success), rows, count if isinstance(count, int) else None)


_RUNTIME = GxRuntime()


def gx_runtime() -> GxRuntime:
    """The process-wide Great Expectations runtime (context and suites are built once)."""
    return _RUNTIME
