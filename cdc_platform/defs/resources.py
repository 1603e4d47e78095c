"""Dagster resources: each external system as a small class with a domain API.

Secrets come from ``EnvVar`` (resolved when a run starts, shown by name in the UI) or from a
secrets directory; nothing secret is in the configuration, and ``repr`` never shows a URL.
Objects that are expensive to build (the Great Expectations runtime, masking policies with
their keys) are built once per process and reused by every run step in it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from dagster import ConfigurableResource, EnvVar
from pydantic import Field, PrivateAttr

from cdc_platform.cdc_raw import SegmentState, scan
from cdc_platform.commitlog.encryption import KeyProvider, KeystoreKeyProvider, RawKeyProvider
from cdc_platform.defs.config import DestinationConfig, PipelineConfig, SourceConfig
from cdc_platform.destinations.base import Destination
from cdc_platform.masking import MaskingPolicy
from cdc_platform.quality import Validator
from cdc_platform.quality.quarantine import QuarantineStore
from cdc_platform.schema.model import Schema
from cdc_platform.staging import StagingArea

_CACHE_LOCK = threading.Lock()
_VALIDATORS: dict[tuple[str, str], Validator] = {}


class CdcRawSource(ConfigurableResource):
    """One Cassandra node's ``cdc_raw`` directory, and the keys of its encrypted segments."""

    node: str = Field(description="The node's name: the first part of its partition keys.")
    directory: str = Field(description="Where the node links its commit log segments (cdc_raw).")
    archive: str | None = Field(default=None, description="Where retired segments of the node go.")
    schema_path: str = Field(description="DESCRIBE … WITH INTERNALS output for the node's tables.")
    cdc_total_space_mb: int = Field(default=4096, description="Cassandra's cdc_total_space for this node.")
    keystore: str | None = Field(default=None, description="JCEKS keystore of the commit log key.")
    keystore_password: str | None = Field(default=None, description="Keystore password (an EnvVar).")
    key_password: str | None = Field(
        default=None, description="Key password (an EnvVar; default: the store's)."
    )
    raw_key: str | None = Field(
        default=None, description="Raw AES key in hex (an EnvVar), instead of a keystore."
    )

    def scan(self) -> list[SegmentState]:
        """The segments in ``cdc_raw`` now (see :func:`cdc_platform.cdc_raw.scan`)."""
        return scan(self.node, Path(self.directory))

    def search_path(self) -> list[Path]:
        """Where a segment of this node may be: ``cdc_raw``, then the archive."""
        out = [Path(self.directory)]
        if self.archive:
            out.append(Path(self.archive) / self.node)
        return out

    def key_provider(self) -> KeyProvider | None:
        """Keys for encrypted segments, if configured."""
        if self.keystore:
            if not self.keystore_password:
                raise ValueError(f"source {self.node}: keystore {self.keystore} needs keystore_password")
            return KeystoreKeyProvider(self.keystore, self.keystore_password, self.key_password)
        if self.raw_key:
            try:
                return RawKeyProvider(bytes.fromhex(self.raw_key.strip()))
            except ValueError:
                raise ValueError(f"source {self.node}: the raw commit log key is not hexadecimal") from None
        return None


class DestinationResource(ConfigurableResource):
    """A destination database; :meth:`open` gives a connected :class:`Destination`."""

    name: str = Field(description="The destination's name in asset keys and metadata.")
    kind: str = Field(description="postgres, timescaledb or clickhouse.")
    url: str = Field(description="Connection URL (an EnvVar: it may hold credentials).")
    schema_prefix: str = Field(default="", description="Prefix of schema/database names.")

    def open(self) -> Destination:
        from cdc_platform.destinations.factory import open_destination

        return open_destination(self.kind, self.url, name=self.name, prefix=self.schema_prefix)


class QuarantineResource(ConfigurableResource):
    """The quarantine store (rejected rows, masked) and the token vault's database."""

    url: str | None = Field(default=None, description="PostgreSQL URL (an EnvVar); none: no quarantine.")

    def store(self) -> QuarantineStore | None:
        return QuarantineStore(self.url) if self.url else None


class QualityResource(ConfigurableResource):
    """The Great Expectations validator (built once per process, then reused)."""

    config_path: str | None = Field(default=None, description="quality.yaml; none: no validation.")

    def validator(self, schema: Schema, schema_path: str) -> Validator | None:
        if not self.config_path:
            return None
        key = (self.config_path, schema_path)
        with _CACHE_LOCK:
            v = _VALIDATORS.get(key)
            if v is None:
                from cdc_platform.quality import QualityConfig

                v = Validator(schema, QualityConfig.from_file(self.config_path))
                _VALIDATORS[key] = v
            return v


class MaskingResource(ConfigurableResource):
    """The masking policy and its keys.

    ``key_variables`` maps the environment variables that masking.yaml names to their values (as
    ``EnvVar``); keys read from files come from ``secrets_dir``.
    """

    config_path: str | None = Field(default=None, description="masking.yaml; none: no masking.")
    secrets_dir: str | None = Field(default=None, description="Directory of key files.")
    key_variables: dict[str, str] = Field(
        default_factory=dict, description="The key variables masking.yaml names, as EnvVar values."
    )
    vault_url: str | None = Field(default=None, description="Token vault database URL (an EnvVar).")
    _policy: MaskingPolicy | None = PrivateAttr(default=None)

    def policy(self, schema: Schema) -> MaskingPolicy | None:
        if not self.config_path:
            return None
        if self._policy is None:
            from cdc_platform.masking import SecretSource, TokenVault

            secrets = SecretSource(environ=_Environ(self.key_variables), secrets_dir=self.secrets_dir)
            vault = TokenVault(self.vault_url) if self.vault_url else None
            self._policy = MaskingPolicy.from_file(self.config_path, schema, secrets=secrets, vault=vault)
        return self._policy


class _Environ(Mapping[str, str]):
    """The key variables given as EnvVar first, then the process environment (keys named by default)."""

    def __init__(self, given: Mapping[str, str]) -> None:
        self.given = given

    def __getitem__(self, name: str) -> str:
        import os

        if name in self.given:
            return self.given[name]
        return os.environ[name]

    def __iter__(self) -> Any:
        import os

        return iter({**os.environ, **self.given})

    def __len__(self) -> int:
        import os

        return len({**os.environ, **self.given})


class StagingResource(ConfigurableResource):
    """The staging directory (every run worker must see it) and the dead-letter directory."""

    directory: str = Field(description="Staged batches of each stage, per segment range.")
    dead_letter: str = Field(description="Raw entries that could not be decoded, kept for later.")

    def area(self) -> StagingArea:
        return StagingArea(self.directory)


def masking_key_variables(path: Path | None) -> list[str]:
    """The environment variables masking.yaml names for its keys (read without any secret)."""
    if path is None:
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    keys = data.get("keys") or {}
    out = []
    for spec in keys.values():
        if isinstance(spec, dict) and isinstance(spec.get("env"), str):
            out.append(spec["env"])
    return sorted(set(out))


def source_resource_key(node: str) -> str:
    return f"cdc_raw_{node}"


def destination_resource_key(name: str) -> str:
    return f"destination_{name}"


def build_resources(config: PipelineConfig) -> dict[str, Any]:
    """Resources for every source and destination of the configuration."""
    resources: dict[str, Any] = {}
    for s in config.sources:
        resources[source_resource_key(s.node)] = _source(config, s)
    for d in config.destinations:
        resources[destination_resource_key(d.name)] = _destination(d)
    quarantine_url = EnvVar(config.quarantine_url_env) if config.quarantine_url_env else None
    resources["quarantine"] = QuarantineResource(url=quarantine_url)
    resources["quality"] = QualityResource(config_path=str(config.quality) if config.quality else None)
    resources["masking"] = MaskingResource(
        config_path=str(config.masking) if config.masking else None,
        secrets_dir=str(config.secrets_dir) if config.secrets_dir else None,
        key_variables={name: EnvVar(name) for name in masking_key_variables(config.masking)},
        vault_url=quarantine_url,
    )
    resources["staging"] = StagingResource(directory=str(config.staging), dead_letter=str(config.dead_letter))
    return resources


def _source(config: PipelineConfig, s: SourceConfig) -> CdcRawSource:
    archive = config.retirement.archive if config.retirement.mode == "archive" else None
    return CdcRawSource(
        node=s.node,
        directory=str(s.cdc_raw),
        archive=str(archive) if archive else None,
        schema_path=str(s.schema),
        cdc_total_space_mb=s.cdc_total_space_mb,
        keystore=str(s.keystore) if s.keystore else None,
        keystore_password=EnvVar(s.keystore_password_env) if s.keystore else None,
        key_password=EnvVar(s.key_password_env) if s.key_password_env else None,
        raw_key=EnvVar(s.raw_key_env) if s.raw_key_env else None,
    )


def _destination(d: DestinationConfig) -> DestinationResource:
    return DestinationResource(name=d.name, kind=d.kind, url=EnvVar(d.url_env), schema_prefix=d.schema_prefix)
