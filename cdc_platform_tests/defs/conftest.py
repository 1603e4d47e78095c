"""A whole platform for Dagster tests: cdc_raw directories, destinations, configuration, instance."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, Definitions, instance_for_test

from cdc_platform.changes.merge import Model
from cdc_platform.defs import build_definitions
from cdc_platform.defs.config import PipelineConfig
from cdc_platform.defs.instance import create_database, dagster_storage_url, template
from cdc_platform.defs.local import LocalDaemon
from cdc_platform.demo import destinations as shop_destinations
from cdc_platform.demo import write_shop_pipeline
from cdc_platform.masking import MaskingPolicy, SecretSource, TokenVault
from cdc_platform.pipeline import decode_range, process_changes, render_state
from cdc_platform.quality import QualityConfig, Validator
from cdc_platform.workload import DEFAULT_NODES, NodeWriter, ShopWorkload

REPO = Path(__file__).resolve().parents[2]
NOW = 1_767_300_000  # after the workload: short TTLs have expired
MASK_KEYS = {
    "CDC_MASK_KEY_2026": "platform-test-mask-key-2026-xyz",
    "CDC_MASK_KEY_2025": "platform-test-mask-key-2025-xyz",
    "CDC_VAULT_KEY_2026": "platform-test-vault-key-2026-xyz",
}


@dataclass
class Platform:
    """Three simulated nodes writing into cdc_raw directories watched by the code location."""

    root: Path
    config_path: Path
    env: dict[str, str]
    workload: ShopWorkload
    writers: dict[str, NodeWriter] = field(default_factory=dict)
    written: list[Any] = field(default_factory=list)

    @property
    def config(self) -> PipelineConfig:
        return PipelineConfig.from_file(self.config_path)

    def definitions(self) -> Definitions:
        return build_definitions(self.config)

    def write(self, count: int, *, sync: bool = True) -> None:
        """Every node receives the next ``count`` mutations (replication factor 3)."""
        batch = list(self.workload.mutations(count))
        self.written.extend(batch)
        for w in self.writers.values():
            w.append(batch)
            if sync:
                w.sync()

    def complete(self) -> None:
        for w in self.writers.values():
            w.close()

    def segments(self, node: str) -> list[Path]:
        return self.writers[node].paths

    def expected(self) -> dict[str, str]:
        """The oracle: node1's segments decoded, validated and masked, merged by Cassandra's rules."""
        config = self.config
        schema = config.schema
        validator = Validator(schema, QualityConfig.from_file(REPO / "config" / "quality.yaml"))
        policy = MaskingPolicy.from_file(
            REPO / "config" / "masking.yaml",
            schema,
            secrets=SecretSource(environ=self.env),
            vault=TokenVault(self.env["CDC_TEST_PG_URL"]),
        )
        model = Model([schema.table(n) for n in config.capture])
        for path in self.segments("node1"):
            if not path.exists():  # retired
                path = self.root / "archive" / "node1" / path.name
            decoded = decode_range(path, schema)
            for p in process_changes(schema, decoded.changes, validator=validator, masking=policy).values():
                model.apply(p.accepted)
        return {n: render_state(schema.table(n), model.visible(n, NOW)) for n in config.capture}


def write_config(root: Path, destinations: list[dict[str, Any]], **overrides: Any) -> Path:
    defaults: dict[str, Any] = {
        "quarantine": {"url_env": "CDC_TEST_PG_URL"},
        "retirement": {"mode": "archive", "archive": "archive", "retention_hours": 1},
        "sensor": {"failure_backoff_seconds": 0, "gauge_interval_seconds": 0},
        "checks": {"agreement_attempts": 2},
    }
    return write_shop_pipeline(root, destinations, config_dir=REPO / "config", **{**defaults, **overrides})


@pytest.fixture()
def platform(
    tmp_path: Path, database: str, clickhouse_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> Platform:
    """Every destination kind: PostgreSQL, TimescaleDB fallback (same server) and the ClickHouse server."""
    prefix = f"p{uuid.uuid4().hex[:8]}_"
    env = {"CDC_TEST_PG_URL": database, "CDC_TEST_CH_URL": clickhouse_server_url, **MASK_KEYS}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    destinations = shop_destinations("CDC_TEST_PG_URL", "CDC_TEST_PG_URL", "CDC_TEST_CH_URL", prefix)
    config_path = write_config(tmp_path, destinations)
    p = Platform(tmp_path, config_path, env, ShopWorkload(seed=21))
    for layout in DEFAULT_NODES:
        p.writers[layout.name] = NodeWriter(
            tmp_path / "nodes" / layout.name / "cdc_raw", layout, segment_size=16 * 1024
        )
    return p


@pytest.fixture()
def postgres_instance(postgres_url: str) -> Iterator[DagsterInstance]:
    """A Dagster instance whose run, event and schedule storage is the embedded PostgreSQL."""
    url = create_database(postgres_url, "dagster")
    storage = {"postgres": {"postgres_url": dagster_storage_url(url)}}
    # The project's run and pool limits (dagster.yaml), on a database of its own.
    overrides = {"storage": storage, "concurrency": template()["concurrency"]}
    with instance_for_test(overrides=overrides) as instance:
        yield instance


@pytest.fixture()
def sqlite_instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        yield instance


def daemon(platform: Platform, instance: DagsterInstance) -> LocalDaemon:
    return LocalDaemon(platform.definitions(), instance)
