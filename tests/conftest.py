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
