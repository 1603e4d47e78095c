"""Destinations on the test servers, each with schemas or databases of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdc_platform.destinations.clickhouse import ClickHouseDestination
from cdc_platform.destinations.postgres.sink import PostgresDestination
from cdc_platform_tests.servers import drop_clickhouse_databases


@pytest.fixture()
def pg(postgres_url: str, schema_prefix: str) -> Iterator[PostgresDestination]:
    dest = PostgresDestination(postgres_url, schema_prefix=schema_prefix)
    yield dest
    dest.close()


@pytest.fixture()
def ch(clickhouse_url: str, schema_prefix: str) -> Iterator[ClickHouseDestination]:
    """On each ClickHouse backend (``clickhouse_url``: the server and chdb)."""
    dest = ClickHouseDestination(clickhouse_url, database_prefix=schema_prefix)
    yield dest
    dest.close()
    drop_clickhouse_databases(clickhouse_url, schema_prefix)
