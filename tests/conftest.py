"""Shared test settings: float64 references, a fixed seed, and a private data home per test
(repository-wide settings — JAX compilation cache, slow doctests, xdist grouping — are in ../conftest.py)."""

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
    import os
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
