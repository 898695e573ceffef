"""Small settings for credibility reports in tests (the same generator, fewer draws and subjects)."""

from __future__ import annotations

import copy

import pytest


def small_context(name: str, **validation):
    """A shipped context of use with cheap settings (the report states every count it used)."""
    from medtwin.credibility import ContextOfUse, shipped_context

    data = copy.deepcopy(shipped_context(name).data)
    if data.get("validation"):
        data["validation"].update({"subjects": 10, "n_draws": 100, "vpc_n_sim": 30, **validation})
    data["uncertainty"]["n_draws"] = 200
    data["uncertainty"]["sobol"].update(n=32, n_bootstrap=20)
    return ContextOfUse.from_mapping(data)


@pytest.fixture
def small():
    return small_context
