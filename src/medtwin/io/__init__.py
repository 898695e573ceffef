"""Data in and out: NONMEM-style datasets (read, validate, write), simulation tables, storage.

Every reader and writer of patient data takes a required ``access`` (see
:mod:`medtwin.io.access`): the consent gate, or an explicit ``OpenData``.
The names below load on first use (pandas and the simulation kernels cost
about a second), so importing one submodule (``medtwin.io.jax_cache``) does
not load the others.
"""

import importlib as _importlib

_LAZY = {
    "DataAccess": "medtwin.io.access",
    "OpenData": "medtwin.io.access",
    "simulate_dataset": "medtwin.io.dataset_simulation",
    "write_simulation": "medtwin.io.dataset_simulation",
    "Dataset": "medtwin.io.nonmem",
    "Subject": "medtwin.io.nonmem",
    "read_nonmem": "medtwin.io.nonmem",
    "validate_nonmem": "medtwin.io.nonmem",
    "write_nonmem": "medtwin.io.nonmem",
}

__all__ = ["DataAccess", "Dataset", "OpenData", "Subject", "read_nonmem", "simulate_dataset", "validate_nonmem",
           "write_nonmem", "write_simulation"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medtwin.io' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
