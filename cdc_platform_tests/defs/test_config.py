"""The pipeline configuration: the example loads, mistakes name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdc_platform.defs.config import PipelineConfig, PipelineConfigError
from cdc_platform.workload import SHOP_SCHEMA_CQL

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "pipeline.yaml"


def test_the_example_configuration_loads() -> None:
    config = PipelineConfig.from_file(EXAMPLE)
    assert config.nodes == ["node1", "node2", "node3"]
    assert [d.name for d in config.destinations] == ["postgres", "timescaledb", "clickhouse"]
    assert config.capture == (
        "shop.customers",
        "shop.inventory",
        "shop.order_events",
        "shop.orders",
        "shop.sessions",
    )
    assert config.source("node2").cdc_raw == REPO / "var" / "cdc_raw" / "node2"
    assert config.quarantine_url_env == "CDC_POSTGRES_URL"
    assert config.retirement.mode == "archive" and config.retirement.archive == REPO / "var" / "archive"
    assert config.destination("clickhouse").pool_name == "cdc_clickhouse"


def test_the_example_schema_is_the_workload_schema() -> None:
    assert (REPO / "config" / "shop.cql").read_text() == SHOP_SCHEMA_CQL


def _write(tmp_path: Path, change: dict[str, object]) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["schema"] = str(REPO / "config" / "shop.cql")
    data["quality"] = str(REPO / "config" / "quality.yaml")
    data["masking"] = str(REPO / "config" / "masking.yaml")
    data.update(change)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "version: expected 1"),
        ({"capture": ["shop.nope"]}, "capture[0]: 'shop.nope' is not a table of the schema"),
        ({"sources": [{"node": "Node 1", "cdc_raw": "/x"}]}, "sources[0].node: 'Node 1'"),
        ({"sources": [{"node": "a", "cdc_raw": "/x"}, {"node": "a", "cdc_raw": "/y"}]}, "listed twice"),
        (
            {"destinations": [{"kind": "mysql", "url_env": "X"}]},
            "destinations[0].kind: 'mysql' is not one of",
        ),
        (
            {"destinations": [{"kind": "postgres", "url_env": "postgresql://u:secret@h/db"}]},
            "is not an environment variable name",
        ),
        ({"retirement": {"mode": "shred"}}, "retirement.mode: 'shred'"),
        ({"sensor": {"interval": 5}}, "sensor: unknown keys ['interval']"),
        ({"staging": "${CDC_TEST_UNSET_VARIABLE}/staging"}, "staging: ${CDC_TEST_UNSET_VARIABLE} is not set"),
        ({"quality": "missing.yaml"}, "quality: "),
        ({"checks": {"cdc_raw_warn_fraction": 2}}, "between 0 and 1"),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path: Path, change: dict[str, object], message: str) -> None:
    path = _write(tmp_path, change)
    with pytest.raises(PipelineConfigError) as info:
        PipelineConfig.from_file(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_paths_expand_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_TEST_ROOT", str(tmp_path / "root"))
    config = PipelineConfig.from_file(_write(tmp_path, {"staging": "${CDC_TEST_ROOT}/staging"}))
    assert config.staging == tmp_path / "root" / "staging"
    assert config.dead_letter == (tmp_path / ".." / "var" / "dead_letter").resolve()  # relative to the file


def test_a_counter_table_cannot_be_captured(tmp_path: Path) -> None:
    schema = tmp_path / "c.cql"
    schema.write_text(
        "CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': '1'};\n"
        "CREATE TABLE k.hits (id int PRIMARY KEY, n counter) WITH ID = 00000000-0000-1000-8000-000000000001;\n"
    )
    with pytest.raises(PipelineConfigError, match="counter table"):
        PipelineConfig.from_file(
            _write(tmp_path, {"schema": str(schema), "capture": ["k.hits"], "masking": None})
        )
