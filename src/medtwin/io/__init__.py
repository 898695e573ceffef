"""Data in and out: NONMEM-style datasets (read, validate, write), simulation tables, storage.

Every reader and writer of patient data takes a required ``access`` (see
:mod:`medtwin.io.access`): the consent gate, or an explicit ``OpenData``.
The names below load on first use (pandas and the simulation kernels cost
about a second), so importing one submodule (``medtwin.io.jax_cache``) does
not load the others.
"""

from medtwin._lazy import lazy_exports as _lazy_exports

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


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals())
