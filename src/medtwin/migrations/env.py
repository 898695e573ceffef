"""Alembic environment for medtwin's packaged migrations.

Invoked by Alembic only (see :func:`medtwin.io.storage.upgrade`). The caller
passes an open connection in ``config.attributes["connection"]``; without one,
a URL from ``sqlalchemy.url`` or :func:`medtwin.io.storage.database_url` is
used. Importing this module outside an Alembic run does nothing (so that
``pytest --doctest-modules`` can import it).
"""

from __future__ import annotations

from alembic import context


def _config():
    try:
        return context.config
    except (NameError, AttributeError):  # not inside an Alembic run
        return None


def run_migrations_online(config) -> None:
    """Run the migrations on the given or a fresh connection."""
    from medtwin.io.storage import database_url, make_engine, metadata

    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or database_url())
    try:
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def run_migrations_offline(config) -> None:
    """Emit SQL for the migrations without a database."""
    from medtwin.io.storage import database_url, metadata

    context.configure(url=config.get_main_option("sqlalchemy.url") or database_url(),
                      target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


_cfg = _config()
if _cfg is not None:
    if context.is_offline_mode():
        run_migrations_offline(_cfg)
    else:
        run_migrations_online(_cfg)
