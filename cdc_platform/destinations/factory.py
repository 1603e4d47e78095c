"""Destinations from command-line style URLs."""

from __future__ import annotations

from cdc_platform.destinations.base import Destination

KINDS = ("postgres", "timescaledb", "clickhouse")


def open_destination(kind: str, url: str, *, name: str | None = None, prefix: str = "") -> Destination:
    """A destination of ``kind`` at ``url``.

    - ``postgres``: a libpq URL; the password from ``PGPASSWORD`` or ``~/.pgpass`` (libpq).
    - ``timescaledb``: the same, for the server holding the change history.
    - ``clickhouse``: ``clickhouse://user@host:9000/db`` (password from
      ``$CDC_CLICKHOUSE_PASSWORD``) or ``chdb:///path`` for the embedded engine.

    ``prefix`` goes before each keyspace's schema (PostgreSQL, TimescaleDB) or database
    (ClickHouse) name, so environments can share a server.
    """
    if kind == "postgres":
        from cdc_platform.destinations.postgres.sink import PostgresDestination

        return PostgresDestination(url, name=name or "postgres", schema_prefix=prefix)
    if kind == "timescaledb":
        from cdc_platform.destinations.timescaledb.sink import TimescaleDestination

        return TimescaleDestination(url, name=name or "timescaledb", schema_prefix=prefix)
    if kind == "clickhouse":
        from cdc_platform.destinations.clickhouse.sink import ClickHouseDestination

        return ClickHouseDestination(url, name=name or "clickhouse", database_prefix=prefix)
    raise ValueError(f"unknown destination kind {kind!r} (expected one of {', '.join(KINDS)})")
