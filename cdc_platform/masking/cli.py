"""``cdc-platform masking``: check a masking configuration, verify destinations.

The group is registered on the main command line with ``main.add_command(masking)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cdc_platform.masking.errors import KeyUnavailableError, MaskingConfigError
from cdc_platform.masking.policy import MaskingPolicy
from cdc_platform.masking.secrets import SecretSource
from cdc_platform.schema.cql import SchemaParseError, load_schema
from cdc_platform.schema.model import Schema


def _load(schema_path: str, config_path: str, secrets_dir: str | None) -> tuple[Schema, MaskingPolicy]:
    try:
        schema = load_schema(schema_path)
        policy = MaskingPolicy.from_file(config_path, schema, secrets=SecretSource(secrets_dir=secrets_dir))
    except (SchemaParseError, MaskingConfigError, KeyUnavailableError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    return schema, policy


_schema_option = click.option(
    "--schema", "schema_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Schema CQL."
)
_config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Masking configuration (YAML).",
)
_secrets_option = click.option(
    "--secrets-dir",
    type=click.Path(exists=True, file_okay=False),
    help="Directory of key files (keys are otherwise read from the environment).",
)


@click.group()
def masking() -> None:
    """Masking rules: check them, verify destinations hold no unmasked PII."""


@masking.command("check")
@_schema_option
@_config_option
@_secrets_option
def check(schema_path: str, config_path: str, secrets_dir: str | None) -> None:
    """Validate a masking configuration against a schema and list what it masks."""
    _, policy = _load(schema_path, config_path, secrets_dir)
    for table in policy.tables:
        for rule in policy.rules(table):
            key = f" (key {rule.key_id})" if rule.key_id else ""
            click.echo(f"{table}.{rule.path}: {rule.algorithm}{key}")


@masking.command("verify")
@_schema_option
@_config_option
@_secrets_option
@click.option(
    "--postgres", "postgres_url", help="PostgreSQL destination URL (password from PGPASSWORD/.pgpass)."
)
@click.option("--clickhouse", "clickhouse_url", help="ClickHouse destination URL.")
@click.option("--quarantine", "quarantine_url", help="Database holding cdc_meta.quarantine.")
@click.option("--schema-prefix", default="", help="The destinations' schema prefix.")
@click.option(
    "--seeds",
    "seeds_path",
    type=click.Path(exists=True, dir_okay=False),
    help="File of known plaintexts, one per line, that must appear nowhere (never printed).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_command(
    schema_path: str,
    config_path: str,
    secrets_dir: str | None,
    postgres_url: str | None,
    clickhouse_url: str | None,
    quarantine_url: str | None,
    schema_prefix: str,
    seeds_path: str | None,
    as_json: bool,
) -> None:
    """Scan destinations for values that look like unmasked PII.

    Exit status 0 when nothing is found, 1 with findings (table, column, reason and value
    fingerprints, never values), 2 for bad arguments, configuration or connections.
    """
    from cdc_platform.masking.verify import VerifyError, verify

    if not (postgres_url or clickhouse_url or quarantine_url):
        click.echo("error: give at least one of --postgres, --clickhouse, --quarantine", err=True)
        sys.exit(2)
    schema, policy = _load(schema_path, config_path, secrets_dir)
    seeds = []
    if seeds_path:
        seeds = [line.rstrip("\r\n") for line in Path(seeds_path).read_text("utf-8").splitlines()]
    try:
        report = verify(
            policy,
            schema,
            postgres_url=postgres_url,
            clickhouse_url=clickhouse_url,
            quarantine_url=quarantine_url,
            seeds=[s for s in seeds if s],
            schema_prefix=schema_prefix,
        )
    except VerifyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.render())
    sys.exit(0 if report.ok else 1)
