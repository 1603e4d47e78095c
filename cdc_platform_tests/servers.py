"""Private database servers for tests and benchmarks: a ClickHouse server of its own.

The test fixtures (``conftest.py``) and ``benchmarks/bench_load.py`` start servers the same way;
this module is that one way. It imports nothing from pytest.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.sax.saxutils import escape

from cdc_platform.defs.instance import embedded_postgres_url as embedded_postgres_url  # re-exported

CLICKHOUSE_SERVER = "/usr/sbin/clickhouse-server"
# A second server user with a password, for the credential tests (only on the server started here).
CLICKHOUSE_TEST_USER = ("cdc_secret_user", "s3cr3t-'\"`-pw")


class ServerStartError(RuntimeError):
    """A server could not be started; the message holds the end of its log."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clickhouse_config(root: Path, port: int) -> Path:
    """Writes a private server config (data, logs, users) under ``root``; returns the config file."""
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


@contextmanager
def clickhouse_server(root: Path, *, timeout: float = 60) -> Iterator[str]:
    """Runs ``clickhouse-server`` with a config of its own under ``root``; yields its URL.

    The server listens on a free port of 127.0.0.1 and is stopped on exit.

    Raises:
        ServerStartError: the binary is missing, the server exited, or it did not answer in time.
    """
    if not os.access(CLICKHOUSE_SERVER, os.X_OK):
        raise ServerStartError(
            f"{CLICKHOUSE_SERVER} is missing: install clickhouse-server or name a server by URL"
        )
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = clickhouse_config(root, port)
    with (root / "log" / "stdout.log").open("wb") as out:
        proc = subprocess.Popen(
            [CLICKHOUSE_SERVER, f"--config-file={config}"], cwd=root, stdout=out, stderr=subprocess.STDOUT
        )
    # clickhouse-driver logs every refused connection while the server starts up.
    driver_log = logging.getLogger("clickhouse_driver.connection")
    level = driver_log.level
    driver_log.setLevel(logging.CRITICAL)
    try:
        from clickhouse_driver import Client

        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log = (root / "log" / "stdout.log").read_text(errors="replace")[-2000:]
                raise ServerStartError(f"clickhouse-server exited with {proc.returncode}: {log}")
            try:
                Client(host="127.0.0.1", port=port, connect_timeout=1).execute("SELECT 1")
                break
            except Exception:  # not listening yet: poll until the deadline
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"clickhouse-server did not answer within {timeout:.0f} s"
                    ) from None
                time.sleep(0.1)
        driver_log.setLevel(level)
        yield f"clickhouse://default@127.0.0.1:{port}/default"
    finally:
        driver_log.setLevel(level)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def drop_clickhouse_databases(url: str, prefix: str) -> None:
    """Drops the databases whose names start with ``prefix`` (a test's own) on a ClickHouse URL."""
    from cdc_platform.destinations.clickhouse import ClickHouseDestination
    from cdc_platform.destinations.clickhouse.client import literal
    from cdc_platform.destinations.clickhouse.typemap import quote_identifier

    dest = ClickHouseDestination(url)
    try:
        client = dest.client()
        for (name,) in client.query(
            f"SELECT name FROM system.databases WHERE startsWith(name, {literal(prefix)})"
        ):
            client.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name.decode())}")
    finally:
        dest.close()
