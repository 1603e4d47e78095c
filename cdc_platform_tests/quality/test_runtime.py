"""Great Expectations is imported lazily, and its context and suites are built once per process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cdc_platform.quality import QualityConfig, Validator
from cdc_platform.quality.suites import GxRuntime
from cdc_platform.schema.model import Schema, Table
from cdc_platform_tests.quality.cases import NOW_S, good_rows, row

REPO = Path(__file__).resolve().parents[2]
RULES = {
    "tables": {
        "qa.people": {
            "rules": [
                {"expectation": "expect_column_values_to_be_between", "column": "points", "min_value": 0}
            ]
        }
    }
}


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_importing_the_package_does_not_import_great_expectations() -> None:
    out = _python("import cdc_platform.quality, sys; print('great_expectations' in sys.modules)")
    assert out == "False"


def test_config_and_validator_setup_do_not_import_great_expectations_or_pandas() -> None:
    out = _python(
        """
        import sys
        from cdc_platform.quality import QualityConfig, Validator
        from cdc_platform.workload import shop_schema
        schema = shop_schema()
        v = Validator(schema, QualityConfig.from_file("config/quality.yaml"))
        v.validate(schema.table("shop.customers"), [])  # an empty batch needs no suite
        print("great_expectations" in sys.modules, "pandas" in sys.modules)
        """
    )
    assert out == "False False"


@pytest.fixture()
def counted_get_context(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import great_expectations as gx

    calls: list[int] = []
    original = gx.get_context

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(gx, "get_context", counting)
    return calls


def test_context_and_suites_are_built_once_and_reused(
    schema: Schema, people: Table, counted_get_context: list[int]
) -> None:
    runtime = GxRuntime()
    config = QualityConfig.from_dict(RULES)
    first = Validator(schema, config, runtime=runtime, clock=lambda: NOW_S)
    second = Validator(schema, config, runtime=runtime, clock=lambda: NOW_S)
    for v in (first, second):
        for n in (3, 5, 1):
            outcome = v.validate(people, [*good_rows(n), row(id=40, points=-1)])
            assert len(outcome.rejected) == 1  # the reused suite still finds each batch's failures
    assert (runtime.contexts_built, runtime.suites_built, len(counted_get_context)) == (1, 1, 1)

    events = schema.table("qa.events")
    first.validate(events, [])
    assert runtime.suites_built == 1  # an empty batch builds nothing
    other = Validator(schema, QualityConfig.from_dict({"defaults": {"severity": "warning"}}), runtime=runtime)
    other.validate(people, good_rows(1))
    assert (runtime.contexts_built, runtime.suites_built, len(counted_get_context)) == (1, 2, 1)


def test_prepare_builds_ahead(schema: Schema, people: Table) -> None:
    runtime = GxRuntime()
    v = Validator(schema, QualityConfig.from_dict(RULES), runtime=runtime, clock=lambda: NOW_S)
    v.prepare()
    assert runtime.suites_built == 2  # both tables of the schema
    v.validate(people, good_rows(2))
    assert runtime.suites_built == 2


def test_a_changed_table_gets_a_new_suite(schema: Schema, people: Table) -> None:
    from cdc_platform.schema.cql import parse_schema
    from cdc_platform_tests.quality.cases import SCHEMA_CQL

    runtime = GxRuntime()
    v = Validator(schema, QualityConfig(), runtime=runtime, clock=lambda: NOW_S)
    v.validate(people, good_rows(1))
    altered = parse_schema(SCHEMA_CQL.replace("    raw blob,\n", "    raw blob,\n    extra int,\n"))
    table = altered.table("qa.people")
    assert "extra" in table.by_name
    v.validate(table, good_rows(1))
    assert runtime.suites_built == 2
