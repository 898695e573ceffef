"""The storage tests' engine: a SQLite file, then a fresh PostgreSQL schema (``pg_url``, tests/conftest.py:
skipped locally, failed in CI when the server is absent)."""

from __future__ import annotations

import pytest

from medtwin.io.storage import make_engine, upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """An engine on an empty database upgraded to head: a SQLite file, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'medtwin-test.db'}")
        upgrade(eng)
        yield eng
        eng.dispose()
        return
    eng = make_engine(request.getfixturevalue("pg_url"))
    try:
        upgrade(eng)
        yield eng
    finally:
        eng.dispose()
