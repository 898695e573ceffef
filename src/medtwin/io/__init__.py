"""Data in and out: NONMEM-style datasets (read, validate, write), simulation tables, storage.

Every reader and writer of patient data takes a required ``access`` (see
:mod:`medtwin.io.access`): the consent gate, or an explicit ``OpenData``.
"""

from medtwin.io.access import DataAccess, OpenData
from medtwin.io.dataset_simulation import simulate_dataset, write_simulation
from medtwin.io.nonmem import Dataset, Subject, read_nonmem, validate_nonmem, write_nonmem

__all__ = ["DataAccess", "Dataset", "OpenData", "Subject", "read_nonmem", "simulate_dataset", "validate_nonmem",
           "write_nonmem", "write_simulation"]
