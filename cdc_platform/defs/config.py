"""The pipeline configuration (``config/pipeline.yaml``): sources, destinations, policies.

The file names where things are and which environment variables hold secrets; it never holds
a secret itself. Relative paths are relative to the file's directory; ``${NAME}`` in a path is
replaced by the environment variable ``NAME`` when the file is read (an unset variable is an
error). Reading validates everything it can without connecting anywhere, and every error
names the file and the key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdc_platform.schema.cql import SchemaParseError, load_schema
from cdc_platform.schema.model import Schema, Table

DEFAULT_CONFIG = "config/pipeline.yaml"
CONFIG_ENV = "CDC_PIPELINE_CONFIG"
DESTINATION_KINDS = ("postgres", "timescaledb", "clickhouse")
RETIREMENT_MODES = ("archive", "delete", "keep")
EXECUTORS = ("in_process", "multiprocess")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PipelineConfigError(ValueError):
    """The pipeline configuration is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class SourceConfig:
    """One Cassandra node's ``cdc_raw`` directory.

    Attributes:
        node: the node's name, the first part of its partition keys (``node1:<segment id>``).
        cdc_raw: the directory Cassandra links segments into (``cdc_raw_directory``).
        schema: the schema file for this node (default: the pipeline's).
        keystore: JCEKS keystore for encrypted segments (transparent data encryption).
        keystore_password_env: variable holding the keystore password.
        key_password_env: variable holding the key password (default: the store password).
        raw_key_env: variable holding raw AES key material in hex, instead of a keystore.
        cdc_total_space_mb: Cassandra's ``cdc_total_space`` for this node; usage is measured
            against it (Cassandra stops accepting CDC writes when ``cdc_raw`` reaches it).
    """

    node: str
    cdc_raw: Path
    schema: Path
    keystore: Path | None = None
    keystore_password_env: str = "CDC_KEYSTORE_PASSWORD"
    key_password_env: str | None = None
    raw_key_env: str | None = None
    cdc_total_space_mb: int = 4096


@dataclass(frozen=True)
class DestinationConfig:
    """One destination.

    Attributes:
        name: the destination's name (asset key prefix, pool name suffix).
        kind: ``postgres``, ``timescaledb`` (change history) or ``clickhouse``.
        url_env: variable holding the connection URL (a password, if any, from the URL's
            own variable, ``PGPASSWORD``/``.pgpass`` or ``$CDC_CLICKHOUSE_PASSWORD``).
        schema_prefix: prefix of the schema (PostgreSQL) or database (ClickHouse) names.
        pool: Dagster pool limiting concurrent loads into this destination.
    """

    name: str
    kind: str
    url_env: str
    schema_prefix: str = ""
    pool: str = ""

    @property
    def pool_name(self) -> str:
        return self.pool or f"cdc_{self.name}"

    @property
    def pool_limit(self) -> int | None:
        """The concurrent loads the pool must allow at most, or ``None`` for no such bound.

        ClickHouse: one. Two writers of a table would both read a row's stored version ``n``
        and both write ``n + 1`` (ReplacingMergeTree keeps one of them: the other's changes
        are lost until a rerun repairs them); loads in one process are serialised by a lock,
        across run processes only the pool can. PostgreSQL and TimescaleDB take a lock per
        table in the database, so their pools may allow more.
        """
        return 1 if self.kind == "clickhouse" else None

    @property
    def holds_current_state(self) -> bool:
        return self.kind != "timescaledb"


@dataclass(frozen=True)
class RetirementConfig:
    """What happens to a segment once every destination has loaded it and its checks passed.

    Attributes:
        mode: ``archive`` (move to ``archive``), ``delete``, or ``keep`` (leave it; then
            something else must empty ``cdc_raw``).
        archive: archive directory (one subdirectory per node).
        retention_hours: archived segments are deleted, and retired segments' Dagster
            partitions pruned, this long after retirement.
    """

    mode: str = "archive"
    archive: Path | None = None
    retention_hours: float = 168.0


@dataclass(frozen=True)
class SensorConfig:
    """Sensor behaviour.

    Attributes:
        interval_seconds: minimum time between ticks.
        max_runs_per_tick: run requests per tick and node (the rest wait for the next tick).
        failure_backoff_seconds: after a failed run, a segment waits this long (doubling per
            further failure, at most ``max_backoff_seconds``) before it is requested again.
        gauge_interval_seconds: how often the ``cdc_raw`` gauge is reported (and retired
            segments' partitions pruned).
        stale_after_seconds: a segment Cassandra never marked ``COMPLETED`` (the node
            restarted) is retired once a newer segment is consumed and its index has not
            changed for this long.
        running_by_default: whether the sensors start running when the code location loads.
    """

    interval_seconds: int = 5
    max_runs_per_tick: int = 20
    failure_backoff_seconds: float = 30.0
    max_backoff_seconds: float = 900.0
    gauge_interval_seconds: float = 60.0
    stale_after_seconds: float = 600.0
    running_by_default: bool = False


@dataclass(frozen=True)
class CheckConfig:
    """Thresholds of the asset checks.

    Attributes:
        max_lag_seconds: freshness: longest acceptable time from an idx update to the load.
        cdc_raw_warn_fraction: ``cdc_raw`` usage (of ``cdc_total_space_mb``) that fails the
            capacity check.
        agreement_attempts: how often destinations are compared before they are declared to
            disagree (loads of other segments touching the same keys may be in flight).
    """

    max_lag_seconds: float = 60.0
    cdc_raw_warn_fraction: float = 0.8
    agreement_attempts: int = 5


@dataclass(frozen=True)
class PipelineConfig:
    """The whole pipeline; see ``config/pipeline.yaml`` for a documented example."""

    path: Path
    schema_path: Path
    schema: Schema
    sources: tuple[SourceConfig, ...]
    destinations: tuple[DestinationConfig, ...]
    capture: tuple[str, ...]
    staging: Path
    dead_letter: Path
    quarantine_url_env: str | None
    quality: Path | None
    masking: Path | None
    secrets_dir: Path | None
    retirement: RetirementConfig = field(default_factory=RetirementConfig)
    sensor: SensorConfig = field(default_factory=SensorConfig)
    checks: CheckConfig = field(default_factory=CheckConfig)
    executor: str = "in_process"

    @property
    def tables(self) -> list[Table]:
        """The captured tables, in name order."""
        return [self.schema.table(name) for name in self.capture]

    def source(self, node: str) -> SourceConfig:
        for s in self.sources:
            if s.node == node:
                return s
        raise KeyError(f"no source for node {node!r} in {self.path} (nodes: {', '.join(self.nodes)})")

    @property
    def nodes(self) -> list[str]:
        return [s.node for s in self.sources]

    def destination(self, name: str) -> DestinationConfig:
        for d in self.destinations:
            if d.name == name:
                return d
        raise KeyError(f"no destination {name!r} in {self.path}")

    @classmethod
    def from_file(cls, path: str | Path) -> PipelineConfig:
        """Reads and validates a pipeline file.

        Raises:
            PipelineConfigError: the file is missing, not YAML, or a key is wrong.
        """
        p = Path(path).resolve()
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PipelineConfigError(
                f"pipeline configuration {p} does not exist (set ${CONFIG_ENV} to the file)"
            ) from None
        except yaml.YAMLError as exc:
            raise PipelineConfigError(f"{p}: not valid YAML: {exc}") from None
        return _Reader(p).pipeline(data)


def load_pipeline_config(path: str | Path | None = None) -> PipelineConfig:
    """The configuration at ``path``, else ``$CDC_PIPELINE_CONFIG``, else ``config/pipeline.yaml``."""
    return PipelineConfig.from_file(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _has_table(schema: Schema, name: str) -> bool:
    ks, _, table = name.partition(".")
    return table in (schema.keyspaces[ks].tables if ks in schema.keyspaces else {})


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def fail(self, key: str, message: str) -> PipelineConfigError:
        return PipelineConfigError(f"{self.path}: {key}: {message}")

    def mapping(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        unknown = set(value) - allowed
        if unknown:
            raise self.fail(key, f"unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, "expected a non-empty string")
        return value

    def number(self, value: Any, key: str, default: float, *, minimum: float = 0) -> float:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise self.fail(key, f"expected a number of at least {minimum}, got {value!r}")
        return float(value)

    def env_name(self, value: Any, key: str) -> str:
        name = self.text(value, key)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise self.fail(
                key, f"{name!r} is not an environment variable name (give the name, not the value)"
            )
        return name

    def file_path(self, value: Any, key: str) -> Path:
        raw = self.text(value, key)

        def expand(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise self.fail(key, f"${{{name}}} is not set")
            return os.environ[name]

        expanded = Path(_VAR.sub(expand, raw)).expanduser()
        return expanded if expanded.is_absolute() else (self.base / expanded).resolve()

    def pipeline(self, data: Any) -> PipelineConfig:
        top = self.mapping(
            data,
            "(top level)",
            {
                "version",
                "schema",
                "capture",
                "sources",
                "destinations",
                "staging",
                "dead_letter",
                "quarantine",
                "quality",
                "masking",
                "secrets_dir",
                "retirement",
                "sensor",
                "checks",
                "runs",
            },
        )
        if top.get("version") != 1:
            raise self.fail("version", "expected 1")
        schema_path = self.file_path(top.get("schema"), "schema")
        schema = self.schema(schema_path, "schema")
        sources = self.sources(top.get("sources"), schema_path)
        destinations = self.destinations(top.get("destinations"))
        capture = self.capture(top.get("capture"), schema)
        for s in sources:
            if s.schema != schema_path:
                other = self.schema(s.schema, f"sources[{s.node}].schema")
                for name in capture:
                    if not _has_table(other, name):
                        raise self.fail(f"sources[{s.node}].schema", f"{s.schema} has no table {name}")
        staging = self.file_path(top.get("staging") or "../var/staging", "staging")
        dead_letter = (
            self.file_path(top["dead_letter"], "dead_letter")
            if top.get("dead_letter")
            else staging / "dead_letter"
        )
        quarantine = self.mapping(top.get("quarantine"), "quarantine", {"url_env"})
        quarantine_env = (
            self.env_name(quarantine["url_env"], "quarantine.url_env") if "url_env" in quarantine else None
        )
        if quarantine_env is None:
            pg = [d for d in destinations if d.kind in ("postgres", "timescaledb")]
            quarantine_env = pg[0].url_env if pg else None
        quality = self.file_path(top["quality"], "quality") if top.get("quality") else None
        if quality is not None and quarantine_env is None:
            raise self.fail(
                "quarantine",
                "validation needs a quarantine: give quarantine.url_env or a PostgreSQL destination",
            )
        masking = self.file_path(top["masking"], "masking") if top.get("masking") else None
        for key, p in (("quality", quality), ("masking", masking)):
            if p is not None and not p.is_file():
                raise self.fail(key, f"{p} does not exist")
        secrets_dir = self.file_path(top["secrets_dir"], "secrets_dir") if top.get("secrets_dir") else None
        return PipelineConfig(
            path=self.path,
            schema_path=schema_path,
            schema=schema,
            sources=sources,
            destinations=destinations,
            capture=capture,
            staging=staging,
            dead_letter=dead_letter,
            quarantine_url_env=quarantine_env,
            quality=quality,
            masking=masking,
            secrets_dir=secrets_dir,
            retirement=self.retirement(top.get("retirement"), staging),
            sensor=self.sensor(top.get("sensor")),
            checks=self.checks(top.get("checks")),
            executor=self.executor(top.get("runs")),
        )

    def executor(self, value: Any) -> str:
        m = self.mapping(value, "runs", {"executor"})
        executor = m.get("executor", "in_process")
        if executor not in EXECUTORS:
            raise self.fail("runs.executor", f"{executor!r} is not one of {', '.join(EXECUTORS)}")
        return str(executor)

    def schema(self, path: Path, key: str) -> Schema:
        try:
            return load_schema(path)
        except FileNotFoundError:
            raise self.fail(key, f"{path} does not exist") from None
        except SchemaParseError as exc:
            raise self.fail(key, str(exc)) from None

    def sources(self, value: Any, schema_path: Path) -> tuple[SourceConfig, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail("sources", "expected a list with one entry per Cassandra node")
        out: list[SourceConfig] = []
        for i, item in enumerate(value):
            key = f"sources[{i}]"
            m = self.mapping(
                item,
                key,
                {
                    "node",
                    "cdc_raw",
                    "schema",
                    "keystore",
                    "keystore_password_env",
                    "key_password_env",
                    "raw_key_env",
                    "cdc_total_space_mb",
                },
            )
            node = self.text(m.get("node"), f"{key}.node")
            if not _NAME.match(node):
                raise self.fail(f"{key}.node", f"{node!r}: use lower-case letters, digits and _")
            if node in {s.node for s in out}:
                raise self.fail(f"{key}.node", f"node {node!r} is listed twice")
            out.append(
                SourceConfig(
                    node=node,
                    cdc_raw=self.file_path(m.get("cdc_raw"), f"{key}.cdc_raw"),
                    schema=self.file_path(m["schema"], f"{key}.schema") if m.get("schema") else schema_path,
                    keystore=self.file_path(m["keystore"], f"{key}.keystore") if m.get("keystore") else None,
                    keystore_password_env=self.env_name(
                        m.get("keystore_password_env", "CDC_KEYSTORE_PASSWORD"),
                        f"{key}.keystore_password_env",
                    ),
                    key_password_env=self.env_name(m["key_password_env"], f"{key}.key_password_env")
                    if m.get("key_password_env")
                    else None,
                    raw_key_env=self.env_name(m["raw_key_env"], f"{key}.raw_key_env")
                    if m.get("raw_key_env")
                    else None,
                    cdc_total_space_mb=int(
                        self.number(m.get("cdc_total_space_mb"), f"{key}.cdc_total_space_mb", 4096, minimum=1)
                    ),
                )
            )
        return tuple(out)

    def destinations(self, value: Any) -> tuple[DestinationConfig, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail("destinations", "expected a list of destinations")
        out: list[DestinationConfig] = []
        for i, item in enumerate(value):
            key = f"destinations[{i}]"
            m = self.mapping(item, key, {"name", "kind", "url_env", "schema_prefix", "pool"})
            kind = self.text(m.get("kind"), f"{key}.kind")
            if kind not in DESTINATION_KINDS:
                raise self.fail(f"{key}.kind", f"{kind!r} is not one of {', '.join(DESTINATION_KINDS)}")
            name = m.get("name", kind)
            if not isinstance(name, str) or not _NAME.match(name):
                raise self.fail(f"{key}.name", f"{name!r}: use lower-case letters, digits and _")
            if name in {d.name for d in out}:
                raise self.fail(f"{key}.name", f"destination {name!r} is listed twice")
            prefix = m.get("schema_prefix", "")
            if not isinstance(prefix, str):
                raise self.fail(f"{key}.schema_prefix", "expected a string")
            out.append(
                DestinationConfig(
                    name=name,
                    kind=kind,
                    url_env=self.env_name(m.get("url_env"), f"{key}.url_env"),
                    schema_prefix=prefix,
                    pool=str(m.get("pool", "")),
                )
            )
        return tuple(out)

    def capture(self, value: Any, schema: Schema) -> tuple[str, ...]:
        if value is None:
            names = sorted(
                t.qualified_name for t in schema.tables if not any(c.is_counter for c in t.columns)
            )
            if not names:
                raise self.fail("capture", "the schema has no table that can be captured")
            return tuple(names)
        if not isinstance(value, list) or not value:
            raise self.fail("capture", "expected a list of keyspace.table names")
        out = []
        for i, name in enumerate(value):
            if not isinstance(name, str) or not _has_table(schema, name):
                raise self.fail(f"capture[{i}]", f"{name!r} is not a table of the schema")
            table = schema.table(name)
            if any(c.is_counter for c in table.columns):
                raise self.fail(
                    f"capture[{i}]",
                    f"{name} is a counter table: counters merge by counter context, not last-write-wins; "
                    "the destinations cannot load it",
                )
            out.append(name)
        return tuple(sorted(set(out)))

    def retirement(self, value: Any, staging: Path) -> RetirementConfig:
        m = self.mapping(value, "retirement", {"mode", "archive", "retention_hours"})
        mode = m.get("mode", "archive")
        if mode not in RETIREMENT_MODES:
            raise self.fail("retirement.mode", f"{mode!r} is not one of {', '.join(RETIREMENT_MODES)}")
        archive = (
            self.file_path(m["archive"], "retirement.archive")
            if m.get("archive")
            else staging.parent / "archive"
        )
        return RetirementConfig(
            mode=mode,
            archive=archive,
            retention_hours=self.number(m.get("retention_hours"), "retirement.retention_hours", 168.0),
        )

    def sensor(self, value: Any) -> SensorConfig:
        m = self.mapping(
            value,
            "sensor",
            {
                "interval_seconds",
                "max_runs_per_tick",
                "failure_backoff_seconds",
                "max_backoff_seconds",
                "gauge_interval_seconds",
                "stale_after_seconds",
                "running_by_default",
            },
        )
        running = m.get("running_by_default", False)
        if not isinstance(running, bool):
            raise self.fail("sensor.running_by_default", "expected true or false")
        return SensorConfig(
            interval_seconds=int(
                self.number(m.get("interval_seconds"), "sensor.interval_seconds", 5, minimum=1)
            ),
            max_runs_per_tick=int(
                self.number(m.get("max_runs_per_tick"), "sensor.max_runs_per_tick", 20, minimum=1)
            ),
            failure_backoff_seconds=self.number(
                m.get("failure_backoff_seconds"), "sensor.failure_backoff_seconds", 30.0
            ),
            max_backoff_seconds=self.number(
                m.get("max_backoff_seconds"), "sensor.max_backoff_seconds", 900.0
            ),
            gauge_interval_seconds=self.number(
                m.get("gauge_interval_seconds"), "sensor.gauge_interval_seconds", 60.0
            ),
            stale_after_seconds=self.number(
                m.get("stale_after_seconds"), "sensor.stale_after_seconds", 600.0
            ),
            running_by_default=running,
        )

    def checks(self, value: Any) -> CheckConfig:
        m = self.mapping(value, "checks", {"max_lag_seconds", "cdc_raw_warn_fraction", "agreement_attempts"})
        fraction = self.number(m.get("cdc_raw_warn_fraction"), "checks.cdc_raw_warn_fraction", 0.8)
        if fraction > 1:
            raise self.fail("checks.cdc_raw_warn_fraction", "expected a fraction between 0 and 1")
        return CheckConfig(
            max_lag_seconds=self.number(m.get("max_lag_seconds"), "checks.max_lag_seconds", 60.0),
            cdc_raw_warn_fraction=fraction,
            agreement_attempts=int(
                self.number(m.get("agreement_attempts"), "checks.agreement_attempts", 5, minimum=1)
            ),
        )
