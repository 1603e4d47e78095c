"""Validating a table's change batch: accepted changes, rejections, and a value-free summary.

How rows map to failures: the batch's frame has one row per change (row ``i`` is
``changes[i]``, see :mod:`cdc_platform.quality.frame`). Row-level expectations (column map,
column pair and multicolumn expectations) report the failing row positions (Great
Expectations' ``unexpected_index_list``, asked for with ``result_format=COMPLETE`` and the
values themselves excluded); each such row gets a :class:`Failure`. Expectations without row
positions (table-level and aggregate expectations such as row counts or column means), and
expectations that raised instead of evaluating, concern the batch as a whole.

Then the table's policy decides, for error-severity failures (warnings are only recorded):

- ``quarantine``: rows with an error failure are rejected (with all their failures); a
  batch-level error rejects every row;
- ``fail``: any error failure raises :class:`BatchRejectedError`, carrying the summary;
- ``warn``: every row is accepted; the summary records the failures.

No value ever appears in a :class:`Failure`, :class:`ValidationSummary`, the metadata, the
log or an exception message: failures name the expectation, the column and a value class
("does not match the pattern", "not valid UTF-8 text", …). Rejections carry the change
itself, for the quarantine store; their ``repr`` shows its provenance only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cdc_platform.changes.records import RowChange
from cdc_platform.quality.config import Policy, QualityConfig, Severity, TableQuality
from cdc_platform.quality.frame import FrameLayout, build_frame
from cdc_platform.quality.suites import (
    CheckResult,
    ExpectationSpec,
    GxRuntime,
    fields_read,
    gx_runtime,
    run_parameters,
    suite_specs,
)
from cdc_platform.schema.model import Schema, Table

log = logging.getLogger(__name__)

EVALUATION_ERROR = "could not be evaluated"


@dataclass(frozen=True)
class Failure:
    """One failed expectation, as reported: never the failing value.

    Attributes:
        expectation: Great Expectations' name, e.g. ``expect_column_values_to_match_regex``.
        column: the Cassandra column (comma-separated for multi-column expectations), or
            ``None`` for table-level checks and write times.
        severity: ``error`` or ``warning``.
        value_class: what the failing value is, e.g. "does not match the pattern".
        rows: in a summary, how many rows failed it (``None`` for batch-level failures);
            ``None`` in a rejection.
    """

    expectation: str
    column: str | None
    severity: str
    value_class: str
    rows: int | None = None

    def describe(self) -> str:
        where = f" on {self.column}" if self.column else ""
        count = f" ({self.rows} rows)" if self.rows is not None else ""
        return f"{self.severity} {self.expectation}{where}: {self.value_class}{count}"

    def as_metadata(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation,
            "column": self.column,
            "severity": self.severity,
            "value_class": self.value_class,
            "rows": self.rows,
        }


@dataclass(frozen=True, repr=False)
class Rejection:
    """A change that failed error-severity expectations (policy ``quarantine``).

    Attributes:
        change: the change as decoded (values included: mask before it leaves the process).
        failures: every failure of this change (errors, and warnings alongside them).
    """

    change: RowChange
    failures: list[Failure]

    def __repr__(self) -> str:
        ch = self.change
        where = f"{ch.keyspace}.{ch.table} {ch.kind.value} segment {ch.segment_id} position {ch.position}"
        return f"Rejection(<{where}>, failures={self.failures!r})"


@dataclass
class ValidationSummary:
    """What validating one batch found, without any value (fit for logs and Dagster metadata).

    Attributes:
        table: ``keyspace.table``.
        policy: the table's policy.
        expectations_run: expectations in the table's suite (0 for an empty batch).
        expectations_failed: how many of them failed (any severity).
        rows_checked: changes validated.
        rows_quarantined: changes rejected to quarantine.
        failed: one entry per failed expectation, with its row count.
        batch_failed: the batch as a whole failed an error expectation (a batch-level
            failure, or any error under policy ``fail``).
        success: no error-severity expectation failed (warnings do not count).
        seconds: wall time of the validation (frame, Great Expectations, policy), to the ms.
    """

    table: str
    policy: str
    expectations_run: int = 0
    expectations_failed: int = 0
    rows_checked: int = 0
    rows_quarantined: int = 0
    failed: list[Failure] = field(default_factory=list)
    batch_failed: bool = False
    success: bool = True
    seconds: float = 0.0

    def describe(self) -> str:
        """One line for logs and error messages."""
        text = (
            f"{self.table}: {self.rows_checked} rows checked against {self.expectations_run} expectations, "
            f"{self.expectations_failed} failed"
        )
        if self.failed:
            text += " [" + "; ".join(f.describe() for f in self.failed) + "]"
        text += f", {self.rows_quarantined} rows quarantined (policy {self.policy})"
        if self.batch_failed:
            text += ", batch failed"
        return text + f", {self.seconds:.3f} s"

    def __str__(self) -> str:
        return self.describe()

    def as_metadata(self) -> dict[str, Any]:
        """A JSON-safe dict (no values) for Dagster metadata."""
        return {
            "table": self.table,
            "policy": self.policy,
            "expectations_run": self.expectations_run,
            "expectations_failed": self.expectations_failed,
            "rows_checked": self.rows_checked,
            "rows_quarantined": self.rows_quarantined,
            "failed": [f.as_metadata() for f in self.failed],
            "batch_failed": self.batch_failed,
            "success": self.success,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class ValidationOutcome:
    """The result of validating a batch.

    Attributes:
        accepted: changes that go on to masking and loading, in batch order.
        rejected: changes for the quarantine store, in batch order.
        summary: what was found, without values.
    """

    accepted: list[RowChange]
    rejected: list[Rejection]
    summary: ValidationSummary


class BatchRejectedError(Exception):
    """A table with policy ``fail`` had an error-severity failure; nothing of the batch goes on.

    Attributes:
        summary: what was found (no values).
    """

    def __init__(self, summary: ValidationSummary) -> None:
        super().__init__(f"batch rejected by the quality policy 'fail': {summary.describe()}")
        self.summary = summary


@dataclass(frozen=True)
class _Prepared:
    layout: FrameLayout
    specs: list[ExpectationSpec]


def _signature(table: Table) -> tuple[Any, ...]:
    return (
        table.qualified_name,
        tuple((c.name, c.type.cql(), c.kind.value, c.position) for c in table.columns),
    )


class Validator:
    """Validates change batches with Great Expectations suites generated per table.

    Suites are built in Great Expectations on a table's first non-empty batch (or by
    :meth:`prepare`) and reused: the Great Expectations context and suites live in a
    process-wide :class:`~cdc_platform.quality.suites.GxRuntime`, keyed by table layout and
    configuration, so validators with the same settings share them.

    Args:
        schema: the captured tables; configured tables missing from it are reported (logged).
        config: the quality configuration (``config/quality.yaml``); defaults when ``None``.
        runtime: the Great Expectations runtime (tests pass their own to count builds).
        clock: seconds since the epoch (the plausible timestamp window ends at now + 1 year).

    Raises:
        QualityConfigError: a rule names a column its table does not have.
    """

    def __init__(
        self,
        schema: Schema,
        config: QualityConfig | None = None,
        *,
        runtime: GxRuntime | None = None,
        clock: Any = time.time,
    ) -> None:
        self.schema = schema
        self.config = config or QualityConfig()
        self._runtime = runtime or gx_runtime()
        self._clock = clock
        self._prepared: dict[tuple[Any, ...], _Prepared] = {}
        for name in self.config.tables:
            try:
                table = schema.table(name)
            except KeyError:
                log.warning(
                    "quality configuration %s names %s, which is not in the schema", self.config.source, name
                )
                continue
            self._prepare(table)

    def _prepare(self, table: Table) -> _Prepared:
        key = _signature(table)
        prepared = self._prepared.get(key)
        if prepared is None:
            layout = FrameLayout.of(table)
            specs = suite_specs(table, layout, self.config.for_table(table.qualified_name))
            layout = layout.reading(fields_read(specs))
            prepared = self._prepared[key] = _Prepared(layout, specs)
        return prepared

    def prepare(self, tables: Iterable[Table] | None = None) -> None:
        """Builds the Great Expectations suites now (default: every table of the schema).

        Raises:
            QualityConfigError: a rule names no Great Expectations expectation or has bad arguments.
        """
        for table in self.schema.tables if tables is None else tables:
            prepared = self._prepare(table)
            self._runtime.suite(table.qualified_name, prepared.layout, prepared.specs)

    def validate(self, table: Table, changes: Sequence[RowChange]) -> ValidationOutcome:
        """Validates ``changes`` of ``table`` and applies the table's policy.

        Returns:
            Accepted changes, rejections (policy ``quarantine``) and the summary.

        Raises:
            BatchRejectedError: policy ``fail`` and an error-severity expectation failed.
            QualityConfigError: a rule names no Great Expectations expectation or has bad arguments.
            ValueError: a change belongs to another table.
        """
        started = time.perf_counter()
        settings = self.config.for_table(table.qualified_name)
        summary = ValidationSummary(table=table.qualified_name, policy=settings.policy.value)
        if not changes:
            # Nothing to check; Great Expectations is not even imported.
            return ValidationOutcome([], [], summary)
        prepared = self._prepare(table)
        built = self._runtime.suite(table.qualified_name, prepared.layout, prepared.specs)
        frame = build_frame(prepared.layout, changes)
        now_ms = int(self._clock() * 1000)
        results = self._runtime.run(built, frame, run_parameters(settings, now_ms))
        outcome = _apply_policy(settings, changes, results, summary)
        # Milliseconds, as the summary prints them: a full-precision float in its repr is noise,
        # and its 17 digits can spell any short number (the privacy tests look for some).
        summary.seconds = round(time.perf_counter() - started, 3)
        if summary.success and not summary.failed:
            log.info("quality %s", summary.describe())
        else:
            log.warning("quality %s", summary.describe())
        if summary.batch_failed and settings.policy is Policy.FAIL:
            raise BatchRejectedError(summary)
        return outcome


def _apply_policy(
    settings: TableQuality,
    changes: Sequence[RowChange],
    results: list[CheckResult],
    summary: ValidationSummary,
) -> ValidationOutcome:
    row_failures: dict[int, list[Failure]] = {}
    batch_failures: list[Failure] = []
    for r in results:
        if r.success:
            continue
        spec = r.spec
        failure = Failure(
            spec.expectation,
            spec.column,
            spec.severity.value,
            EVALUATION_ERROR if r.errored else spec.value_class,
        )
        if r.errored:
            # The exception's message may quote values: it is not logged.
            log.warning(
                "quality %s: %s (%s) could not be evaluated on this batch",
                summary.table,
                spec.expectation,
                spec.origin,
            )
        if r.rows:
            for row in r.rows:
                row_failures.setdefault(row, []).append(failure)
            summary.failed.append(replace(failure, rows=len(r.rows)))
        else:
            batch_failures.append(failure)
            summary.failed.append(failure)
    error = Severity.ERROR.value
    batch_error = any(f.severity == error for f in batch_failures)
    error_rows = sorted(i for i, fs in row_failures.items() if any(f.severity == error for f in fs))
    summary.expectations_run = len(results)
    summary.expectations_failed = len(summary.failed)
    summary.rows_checked = len(changes)
    summary.success = not batch_error and not error_rows
    policy = settings.policy
    if policy is Policy.FAIL:
        summary.batch_failed = not summary.success
        return ValidationOutcome([] if summary.batch_failed else list(changes), [], summary)
    if policy is Policy.WARN or summary.success:
        return ValidationOutcome(list(changes), [], summary)
    if batch_error:
        summary.batch_failed = True
        rejected = [Rejection(ch, batch_failures + row_failures.get(i, [])) for i, ch in enumerate(changes)]
        summary.rows_quarantined = len(rejected)
        return ValidationOutcome([], rejected, summary)
    rejected_set = set(error_rows)
    rejected = [Rejection(changes[i], row_failures[i]) for i in error_rows]
    accepted = [ch for i, ch in enumerate(changes) if i not in rejected_set]
    summary.rows_quarantined = len(rejected)
    return ValidationOutcome(accepted, rejected, summary)
