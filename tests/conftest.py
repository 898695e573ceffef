"""Shared test settings: float64 references, a fixed seed."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)
