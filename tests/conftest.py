"""Shared test settings: float64 references, a fixed seed, and a private data home per test
(repository-wide settings — JAX compilation cache, slow doctests, xdist grouping — are in ../conftest.py)."""

import os

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


@pytest.fixture(autouse=True)
def private_data_home(tmp_path_factory, monkeypatch):
    """Every test gets its own MEDTWIN_HOME (SQLite database and signing key), never the user's."""
    home = tmp_path_factory.mktemp("medtwin_home")
    monkeypatch.setenv("MEDTWIN_HOME", str(home))
    monkeypatch.delenv("MEDTWIN_DATABASE_URL", raising=False)
    return home


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium for the real-browser tests (Playwright drives it; no browser download): its path.

    Skips when /usr/bin/chromium (or ``MEDTWIN_CHROMIUM``) or playwright is missing, unless
    ``MEDTWIN_REQUIRE_CHROMIUM=1`` (set by .ci/run), where it fails instead.
    """
    from pathlib import Path

    path = Path(os.environ.get("MEDTWIN_CHROMIUM", "/usr/bin/chromium"))
    missing = None
    if not path.exists():
        missing = f"no Chromium at {path} (apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install playwright; the test extra has it)"
    if missing:
        if os.environ.get("MEDTWIN_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"MEDTWIN_REQUIRE_CHROMIUM=1 but {missing}")
        pytest.skip(missing)
    return path


#: The PostgreSQL server of the storage and service tests (a fresh schema per test).
PG_URL = os.environ.get("MEDTWIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_unreachable() -> str | None:
    from medtwin.io.storage import make_engine

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
    """Name of a fresh, empty PostgreSQL schema (dropped afterwards) on ``PG_URL``
    (``MEDTWIN_TEST_POSTGRES_URL``); skipped when the server is unreachable, failed instead when
    ``MEDTWIN_REQUIRE_POSTGRES=1`` (.ci/run sets it, so CI never silently skips)."""
    import uuid

    from medtwin.io.storage import make_engine

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


@pytest.fixture
def pg_url(pg_schema):
    """A database URL on a fresh PostgreSQL schema (:func:`pg_schema`)."""
    return f"{PG_URL}?options=-csearch_path%3D{pg_schema}"
