"""Storage: database URL, engine factory and schema migrations.

medtwin keeps durable records (the audit log first) in a SQL database through
SQLAlchemy 2. SQLite is the embedded default; PostgreSQL (driver psycopg 3) is
the production choice.

Where the database lives
------------------------
:func:`database_url` resolves, in this order:

1. ``MEDTWIN_DATABASE_URL`` -- any SQLAlchemy URL, e.g.
   ``postgresql+psycopg://user@host:5432/medtwin`` (a bare ``postgresql://``
   URL is mapped to the psycopg 3 driver);
2. ``sqlite:///$MEDTWIN_HOME/medtwin.db`` when ``MEDTWIN_HOME`` is set;
3. ``sqlite:///$XDG_DATA_HOME/medtwin/medtwin.db``, ``XDG_DATA_HOME``
   defaulting to ``~/.local/share``.

Schema
------
The schema is owned by Alembic. The migration scripts ship *inside* the
package (``medtwin/migrations``), and :func:`upgrade` builds the Alembic
configuration in code, so no ``alembic.ini`` is needed at run time.

Examples
--------
>>> import tempfile, pathlib, sqlalchemy as sa
>>> d = tempfile.mkdtemp()
>>> url = database_url({"MEDTWIN_HOME": d})
>>> url.endswith("medtwin.db")
True
>>> engine = make_engine(url)
>>> upgrade(engine)
>>> "audit_log" in sa.inspect(engine).get_table_names()
True
>>> upgrade(engine)  # idempotent
>>> engine.dispose()
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from medtwin.io.paths import data_home, private_dir  # noqa: F401 (re-exported: storage's own names)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: BEGIN IMMEDIATE alone serialises the migration
    fcntl = None

__all__ = ["AUDIT_TABLE", "CONSENTS_TABLE", "DECISIONS_TABLE", "RUNS_TABLE", "audit_table", "consents_table",
           "data_home", "database_url", "decisions_table", "default_sqlite_path", "make_engine", "metadata",
           "private_dir", "runs_table", "upgrade", "write_private_temp"]

#: Name of the hash-chained audit log table.
AUDIT_TABLE = "audit_log"

#: Schema description of the tables, matching the head Alembic revision.
#: Used by code (queries); the migrations, not ``metadata.create_all``, create it.
metadata = sa.MetaData()

audit_table = sa.Table(
    AUDIT_TABLE,
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("patient", sa.Text, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("entry_hash", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Index("ix_audit_log_patient", "patient"),
    sa.Index("ix_audit_log_patient_action", "patient", "action"),
)

#: Name of the table of stored FHIR Consents (R5 JSON, see medtwin.governance.consent_store).
CONSENTS_TABLE = "consents"

consents_table = sa.Table(
    CONSENTS_TABLE,
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("patient", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("date", sa.Text, nullable=True),
    sa.Column("resource", sa.Text, nullable=False),
    sa.Column("added_at", sa.Text, nullable=False),
    sa.Index("ix_consents_patient", "patient"),
)

#: Name of the table of recorded runs (re-executable specification + signed provenance).
RUNS_TABLE = "runs"

runs_table = sa.Table(
    RUNS_TABLE,
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("operator", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("provenance", sa.Text, nullable=False),
    sa.Column("output_digest", sa.String(80), nullable=False),
)

#: Name of the table of clinicians' decisions on recommendations (see medtwin.governance.decision_store).
DECISIONS_TABLE = "decisions"

decisions_table = sa.Table(
    DECISIONS_TABLE,
    metadata,
    sa.Column("decision_id", sa.String(64), primary_key=True),
    sa.Column("patient", sa.Text, nullable=False),
    sa.Column("recommendation_id", sa.String(80), nullable=False),
    sa.Column("choice", sa.String(16), nullable=False),
    sa.Column("clinician", sa.Text, nullable=False),
    sa.Column("operator", sa.Text, nullable=False),
    sa.Column("time_h", sa.Float(precision=53), nullable=False),
    sa.Column("decided_at", sa.String(40), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("recommendation", sa.Text, nullable=False),
    sa.Column("provenance", sa.Text, nullable=False),
    sa.Index("ix_decisions_patient", "patient"),
)

#: Milliseconds a SQLite connection waits for a lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 60_000

#: First key of the PostgreSQL advisory lock taken while migrating (the second is the schema's hash).
MIGRATION_LOCK_CLASS = 0x6D747769  # "mtwi"

_MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def default_sqlite_path(env: Mapping[str, str] | None = None) -> Path:
    """Return the default SQLite database file.

    Parameters
    ----------
    env : mapping, optional
        Environment to read (default ``os.environ``).

    Returns
    -------
    pathlib.Path
        ``$MEDTWIN_HOME/medtwin.db`` if ``MEDTWIN_HOME`` is set, otherwise
        ``$XDG_DATA_HOME/medtwin/medtwin.db`` (``~/.local/share`` by default).

    Examples
    --------
    >>> str(default_sqlite_path({"MEDTWIN_HOME": "/srv/mt"}))
    '/srv/mt/medtwin.db'
    >>> default_sqlite_path({"XDG_DATA_HOME": "/data"}).as_posix()
    '/data/medtwin/medtwin.db'
    """
    return data_home(env) / "medtwin.db"


def database_url(env: Mapping[str, str] | None = None) -> str:
    """Return the database URL medtwin should use.

    Parameters
    ----------
    env : mapping, optional
        Environment to read (default ``os.environ``).

    Returns
    -------
    str
        ``MEDTWIN_DATABASE_URL`` when set, otherwise a SQLite URL to
        :func:`default_sqlite_path`.

    Examples
    --------
    >>> database_url({"MEDTWIN_DATABASE_URL": "postgresql://u@h/db"})
    'postgresql://u@h/db'
    >>> database_url({"MEDTWIN_HOME": "/srv/mt"})
    'sqlite:////srv/mt/medtwin.db'
    """
    env = os.environ if env is None else env
    url = env.get("MEDTWIN_DATABASE_URL")
    if url:
        return url
    return "sqlite:///" + default_sqlite_path(env).as_posix()


def _on_sqlite_connect(dbapi_connection, connection_record):
    # Let SQLAlchemy (our "begin" hook), not the sqlite3 module, emit BEGIN.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode = WAL")
    # FULL: every commit is fsync'ed to the WAL, so a committed entry survives
    # a power loss, not only a process crash (NORMAL would only guarantee that).
    cur.execute("PRAGMA synchronous = FULL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _on_sqlite_begin(conn):
    # ``conn.execution_options(sqlite_begin="IMMEDIATE")`` takes the write lock
    # at BEGIN, so read-then-write transactions (the audit head) cannot race.
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
        raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
    conn.exec_driver_sql(f"BEGIN {mode}")


def write_private_temp(directory: str | os.PathLike, name: str, data: bytes) -> Path:
    """Write ``data`` to a new private (0600) temporary file in ``directory``, fsync'ed; return its path.

    The caller moves it into place (``os.replace`` to overwrite, ``os.link`` to
    create only if absent) and unlinks it afterwards; the temporary name is
    unique, so concurrent writers never share one.

    Examples
    --------
    >>> import tempfile
    >>> tmp = write_private_temp(tempfile.mkdtemp(), "x.json", b"{}")
    >>> oct(tmp.stat().st_mode & 0o777), tmp.read_bytes()
    ('0o600', b'{}')
    """
    tmp = Path(directory) / f".{name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _sqlite_file(u: sa.URL) -> Path | None:
    """The database file of a SQLite URL, None for in-memory and ``file:`` URI databases."""
    db = u.database
    if not db or db == ":memory:" or db.startswith("file:") or u.query.get("uri") in ("true", "1"):
        return None
    return Path(db).expanduser()


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if absent; tighten an existing one of ours to 0600."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    if os.name != "posix":
        return
    st = path.stat()
    if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


def _private_sqlite_file(db: Path) -> None:
    """Folders 0700 (when created) and the SQLite file 0600 before SQLite first opens it.

    SQLite creates ``-wal``/``-shm`` with the database file's mode; existing ones are tightened too.
    """
    private_dir(db.parent)
    _private_file(db)
    for suffix in ("-wal", "-shm"):
        journal = db.with_name(db.name + suffix)
        if journal.exists():
            _private_file(journal)


def make_engine(url: str | sa.URL | None = None, **kwargs) -> Engine:
    """Create a SQLAlchemy engine configured for medtwin.

    Parameters
    ----------
    url : str or sqlalchemy.URL, optional
        Database URL; default :func:`database_url`. ``postgresql://`` without
        a driver uses psycopg 3 (``postgresql+psycopg://``).
    **kwargs
        Passed to :func:`sqlalchemy.create_engine`.

    Returns
    -------
    sqlalchemy.engine.Engine

    Notes
    -----
    SQLite: missing folders up to the database file are created mode 0700 and
    the file itself 0600 (an existing file open to group/other is tightened to
    0600; SQLite gives its ``-wal``/``-shm`` files the database file's mode),
    see :func:`private_dir`; each connection runs in WAL mode
    with ``synchronous=FULL`` and a busy timeout of
    :data:`SQLITE_BUSY_TIMEOUT_MS`; transactions are begun by SQLAlchemy, and a
    connection with execution option ``sqlite_begin="IMMEDIATE"`` begins with
    ``BEGIN IMMEDIATE`` (write lock taken at once).

    Examples
    --------
    >>> engine = make_engine("sqlite://")
    >>> with engine.connect() as c:
    ...     c.exec_driver_sql("select 1").scalar()
    1
    """
    u = make_url(database_url() if url is None else url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    kwargs.setdefault("pool_pre_ping", True)
    if u.get_backend_name() == "sqlite":
        db = _sqlite_file(u)
        if db is not None:
            _private_sqlite_file(db)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
        engine = sa.create_engine(u, connect_args=connect_args, **kwargs)
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        sa.event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    return sa.create_engine(u, **kwargs)


def alembic_config(connection: sa.Connection | None = None):
    """Build the Alembic configuration for the packaged migrations in code.

    Parameters
    ----------
    connection : sqlalchemy.Connection, optional
        Connection the migration environment runs on.

    Returns
    -------
    alembic.config.Config
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (default: the newest).

    Runs the Alembic migrations shipped in ``medtwin/migrations``
    programmatically; safe to call on every start (already-applied revisions
    are skipped) and from several processes at once.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        Target database (tables go to the connection's default schema, i.e.
        the first entry of ``search_path`` on PostgreSQL).
    revision : str, default "head"
        Target Alembic revision.

    Notes
    -----
    Fast path: a schema already at head is only read (one query). Otherwise
    reading the version and migrating happen under a migration lock, so
    concurrent first starts migrate once and the others wait and then find
    the schema at head: on PostgreSQL a transaction-level advisory lock keyed
    by the schema (:data:`MIGRATION_LOCK_CLASS`, ``hashtext(current_schema())``)
    taken in the migration's own transaction; on SQLite an exclusive
    ``flock`` on ``<database>.lock`` (where ``fcntl`` exists) and a
    ``BEGIN IMMEDIATE`` transaction.
    """
    if revision == "head" and _at_head(engine):
        return
    from alembic import command

    with _migration_lock(engine) as conn:
        command.upgrade(alembic_config(conn), revision)


def _at_head(engine: Engine) -> bool:
    """True when the schema is at the newest packaged revision (one read, no lock, no Alembic import).

    Alembic's own check imports its migration runtime (about 0.5 s of a new process, every command); the
    packaged heads are read from the migration files instead (:func:`packaged_heads`) and the current
    revision with one ``SELECT`` of Alembic's version table.
    """
    heads = set(packaged_heads())
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return False
        current = {row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
    return current == heads


def packaged_heads() -> tuple[str, ...]:
    """The head revisions of the packaged migrations: revisions no other revision names as its ``down_revision``.

    Read from the ``revision = ...`` / ``down_revision = ...`` lines of ``medtwin/migrations/versions/*.py``
    (literal values); a file without both literals falls back to Alembic's script directory.

    Examples
    --------
    >>> packaged_heads()[0].startswith("0")
    True
    """
    import ast

    revisions, downs = set(), set()
    for path in sorted((_MIGRATIONS_DIR / "versions").glob("*.py")):
        values = {}
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id in ("revision", "down_revision")):
                try:
                    values[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    break
        if path.name == "__init__.py" and not values:
            continue
        if not isinstance(values.get("revision"), str) or "down_revision" not in values:
            from alembic.script import ScriptDirectory

            return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))
        revisions.add(values["revision"])
        down = values["down_revision"]
        downs.update([down] if isinstance(down, str) else (down or ()))
    return tuple(sorted(revisions - downs))


@contextlib.contextmanager
def _migration_lock(engine: Engine):
    """A connection in a transaction that holds the installation's migration lock (see :func:`upgrade`)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:cls, hashtext(coalesce(current_schema(), '')))"),
                         {"cls": MIGRATION_LOCK_CLASS})
            yield conn
        return
    with contextlib.ExitStack() as stack:
        db = _sqlite_file(engine.url) if engine.dialect.name == "sqlite" else None
        if db is not None and fcntl is not None:
            lock = db.with_name(db.name + ".lock")
            _private_file(lock)
            fd = os.open(lock, os.O_RDWR)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed, or when the process dies
        conn = stack.enter_context(engine.connect())
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn
