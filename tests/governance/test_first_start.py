"""A new installation: concurrent first starts (migration lock, one signing key) and private files.

The concurrent tests run the real ``medtwin`` command in four processes forked
after one (slow, ~5 s) import of the CLI; they wait for one go signal, so that
their first database access really happens at the same moment.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from medtwin.governance.provenance import KEY_FILENAME, load_or_create_key
from medtwin.io.storage import alembic_config, make_engine, upgrade

PG_URL = os.environ.get("MEDTWIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: Imports the CLI once, then forks n processes that each run the real ``medtwin`` command when the go file
#: appears (argv: n, folder for the go file and each process's stdout/stderr, then the medtwin arguments).
_LAUNCH = """
import os, sys, time, traceback
from pathlib import Path
from medtwin.cli import main
import alembic.command, medtwin.governance.consent_store, medtwin.governance.runs  # what the command opens
n, out, args = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
pids = []
for i in range(n):
    pid = os.fork()
    if pid == 0:
        for fd, name in ((1, f"out{i}"), (2, f"err{i}")):
            os.dup2(os.open(out / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        sys.argv = ["medtwin", *args]
        while not (out / "go").exists():
            time.sleep(0.001)
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    pids.append(pid)
(out / "go").touch()
print(" ".join(str(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])) for pid in pids))
"""


def _head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _start_at_once(env: dict, args: list[str], tmp: Path, n: int = 4) -> list[subprocess.CompletedProcess]:
    """Run ``medtwin ARGS`` in n processes whose first database access happens at the same moment."""
    out = tmp / "launch"
    out.mkdir()
    done = subprocess.run([sys.executable, "-c", _LAUNCH, str(n), str(out), *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    codes = [int(c) for c in done.stdout.split()]
    assert len(codes) == n, done.stdout
    return [subprocess.CompletedProcess(["medtwin", *args], code, (out / f"out{i}").read_text(),
                                        (out / f"err{i}").read_text()) for i, code in enumerate(codes)]


def _check_all_succeeded(done: list[subprocess.CompletedProcess], home: Path) -> None:
    for d in done:
        assert d.returncode == 0 and "Traceback" not in d.stderr, d.stderr[-2000:]
    assert sorted(p.name for p in (home / "keys").iterdir()) == [KEY_FILENAME]  # one key, no temporary files


_FORK = pytest.mark.skipif(not hasattr(os, "fork"), reason="the launcher forks the CLI processes (POSIX)")


@_FORK
def test_concurrent_first_start_sqlite(tmp_path):
    home = tmp_path / "new-home"
    env = {**os.environ, "MEDTWIN_HOME": str(home)}
    env.pop("MEDTWIN_DATABASE_URL", None)
    _check_all_succeeded(_start_at_once(env, ["runs"], tmp_path), home)
    engine = make_engine(f"sqlite:///{home / 'medtwin.db'}")
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head()
    engine.dispose()


@_FORK
def test_concurrent_first_start_postgresql(tmp_path, pg_schema):
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={pg_schema}"})
    home = tmp_path / "new-home"
    env = {**os.environ, "MEDTWIN_HOME": str(home),
           "MEDTWIN_DATABASE_URL": url.render_as_string(hide_password=False)}
    _check_all_succeeded(_start_at_once(env, ["runs"], tmp_path), home)
    engine = make_engine(env["MEDTWIN_DATABASE_URL"])
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select current_schema()").scalar() == pg_schema
        assert MigrationContext.configure(conn).get_current_revision() == _head()
    engine.dispose()
    assert not (home / "medtwin.db").exists()


def test_upgrade_at_head_takes_no_migration_lock(tmp_path, monkeypatch):
    from medtwin.io import storage

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)

    def no_lock(_engine):
        raise AssertionError("the slow path ran on a schema already at head")

    monkeypatch.setattr(storage, "_migration_lock", no_lock)
    upgrade(engine)  # fast path: reads the version only
    engine.dispose()


def test_upgrade_migrates_under_the_lock_on_both_dialects(engine):
    """A schema below head goes through the locked slow path and ends at head (SQLite and PostgreSQL)."""
    import alembic.command

    with engine.begin() as conn:  # back to 0003 through the migrations' own downgrades
        alembic.command.downgrade(alembic_config(conn), "0003_runs")
    assert "decisions" not in sa.inspect(engine).get_table_names()
    upgrade(engine)
    assert "decisions" in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head()


# ------------------------------------------------------------------------------------ private files
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_new_database_folder_and_files_are_private(tmp_path):
    home = tmp_path / "a" / "home"
    engine = make_engine(f"sqlite:///{home / 'medtwin.db'}")
    upgrade(engine)
    load_or_create_key(home / "keys")
    with engine.begin() as conn:  # keeps the -wal and -shm files while open
        conn.exec_driver_sql("CREATE TABLE t (x)")
        names = {p.name for p in home.iterdir()}
        assert {"medtwin.db", "medtwin.db-wal", "medtwin.db-shm"} <= names
        for name in names - {"keys"}:
            assert _mode(home / name) == 0o600, name
    engine.dispose()
    for folder in (tmp_path / "a", home, home / "keys"):
        assert _mode(folder) == 0o700, folder
    assert _mode(home / "keys" / KEY_FILENAME) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_existing_open_database_file_is_tightened(tmp_path):
    db = tmp_path / "medtwin.db"
    old = make_engine(f"sqlite:///{db}")
    upgrade(old)
    old.dispose()
    os.chmod(db, 0o644)  # as older versions left it
    os.chmod(tmp_path, 0o755)
    engine = make_engine(f"sqlite:///{db}")
    assert _mode(db) == 0o600
    assert _mode(tmp_path) == 0o755  # a folder medtwin did not create is left as it is
    engine.dispose()


def _as_nobody() -> list[str]:
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("needs root, to run a command as a second OS user (nobody)")
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    pytest.skip("neither setpriv nor runuser is installed to run a command as a second OS user")


def test_another_local_user_cannot_read_the_data(monkeypatch):
    from medtwin.cli.edge import open_stores as _open_stores

    prefix = _as_nobody()
    base = Path(tempfile.mkdtemp(prefix="medtwin-perm-"))
    try:
        os.chmod(base, 0o755)  # a world-readable parent, like a home directory
        home = base / "home"
        monkeypatch.setenv("MEDTWIN_HOME", str(home))
        monkeypatch.delenv("MEDTWIN_DATABASE_URL", raising=False)
        stores = _open_stores()
        stores.consents.engine.dispose()
        assert (home / "medtwin.db").stat().st_size > 0
        for target in (["cat", str(home / "medtwin.db")], ["ls", str(home)],
                       ["cat", str(home / "keys" / KEY_FILENAME)]):
            done = subprocess.run(prefix + target, capture_output=True, text=True)
            assert done.returncode != 0 and "Permission denied" in done.stderr, (target, done.stderr)
        sanity = subprocess.run(prefix + ["ls", str(base)], capture_output=True, text=True)
        assert sanity.returncode == 0, sanity.stderr  # the second user does run and can see the parent
    finally:
        shutil.rmtree(base)
