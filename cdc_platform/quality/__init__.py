"""Data quality: Great Expectations suites per captured table, and the rejections they produce.

Importing this package imports neither Great Expectations nor pandas; both are loaded on the
first non-empty batch (or :meth:`Validator.prepare`).

    validator = Validator(schema, QualityConfig.from_file("config/quality.yaml"))
    outcome = validator.validate(table, changes)
    outcome.accepted  # on to masking and loading
    outcome.rejected  # to the quarantine store
    outcome.summary.as_metadata()  # no values: fit for Dagster metadata and logs
"""

from __future__ import annotations

from cdc_platform.quality.config import (
    Policy,
    QualityConfig,
    QualityConfigError,
    Rule,
    Severity,
    TableQuality,
)
from cdc_platform.quality.validator import (
    BatchRejectedError,
    Failure,
    Rejection,
    ValidationOutcome,
    ValidationSummary,
    Validator,
)

__all__ = [
    "BatchRejectedError",
    "Failure",
    "Policy",
    "QualityConfig",
    "QualityConfigError",
    "Rejection",
    "Rule",
    "Severity",
    "TableQuality",
    "ValidationOutcome",
    "ValidationSummary",
    "Validator",
]
