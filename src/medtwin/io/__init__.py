"""Data in and out: NONMEM-style datasets (read, validate, write) and simulation tables."""

from medtwin.io.nonmem import (
    Dataset,
    Subject,
    read_nonmem,
    simulate_dataset,
    validate_nonmem,
    write_nonmem,
    write_simulation,
)

__all__ = ["Dataset", "Subject", "read_nonmem", "simulate_dataset", "validate_nonmem", "write_nonmem",
           "write_simulation"]
