"""Fixtures of the quality tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cdc_platform.quality import QualityConfig, Validator
from cdc_platform.schema.cql import parse_schema
from cdc_platform.schema.model import Schema, Table
from cdc_platform_tests.quality.cases import NOW_S, SCHEMA_CQL


@pytest.fixture(scope="session")
def schema() -> Schema:
    return parse_schema(SCHEMA_CQL, "quality test schema")


@pytest.fixture(scope="session")
def people(schema: Schema) -> Table:
    return schema.table("qa.people")


@pytest.fixture()
def make_validator(schema: Schema) -> Callable[..., Validator]:
    """A validator with the test clock; ``tables`` is the ``tables`` section of the config."""

    def make(
        tables: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None, **kw: Any
    ) -> Validator:
        data: dict[str, Any] = {"tables": tables or {}}
        if defaults:
            data["defaults"] = defaults
        return Validator(schema, QualityConfig.from_dict(data), clock=lambda: NOW_S, **kw)

    return make
