"""PostgreSQL for the storage tests: one fresh schema per test, skipped (locally) or failed (CI) when absent.

The server is ``MEDTWIN_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
``.ci/run`` sets ``MEDTWIN_REQUIRE_POSTGRES=1`` so that CI never silently skips them.
"""

from __future__ import annotations

import os
import uuid

import pytest

from medtwin.io.storage import make_engine, upgrade

PG_URL = os.environ.get("MEDTWIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_unreachable() -> str | None:
    try:
        eng = make_engine(PG_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.exec_driver_sql("select 1")
        eng.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        return f"PostgreSQL not reachable at {PG_URL} ({type(exc).__name__}: {exc})"


@pytest.fixture
def pg_schema():
    """Name of a fresh, empty PostgreSQL schema (dropped afterwards) on ``PG_URL``."""
    why = _pg_unreachable()
    if why:
        if os.environ.get("MEDTWIN_REQUIRE_POSTGRES") == "1":
            pytest.fail(why)
        pytest.skip(why)
    schema = "mt_" + uuid.uuid4().hex[:12]
    admin = make_engine(PG_URL)
    with admin.begin() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """An engine on an empty database upgraded to head: a SQLite file, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'medtwin-test.db'}")
        upgrade(eng)
        yield eng
        eng.dispose()
        return
    schema = request.getfixturevalue("pg_schema")
    eng = make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        upgrade(eng)
        yield eng
    finally:
        eng.dispose()
