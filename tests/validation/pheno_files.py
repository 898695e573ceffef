"""Files of pharmpy-core's NONMEM phenobarbital run, shared by the validation tests."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest


def pheno_example(name: str) -> Path:
    """A file of pharmpy-core's NONMEM pheno run (skips the test when this pharmpy version lacks it)."""
    path = Path(str(importlib.resources.files("pharmpy") / "internals" / "example_models" / name))
    if not path.exists():
        pytest.skip(f"pharmpy does not ship {name} in this version")
    return path
