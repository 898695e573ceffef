"""Alembic migration environment shipped with medtwin.

Run through :func:`medtwin.io.storage.upgrade`; no ``alembic.ini`` is needed.
"""
