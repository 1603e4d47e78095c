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
