"""Where an installation keeps its files: :func:`data_home` and :func:`private_dir`.

Standard library only, so that a process edge that only needs a folder (the
command line's compilation caches, :mod:`medtwin.io.jax_cache`) does not load
the database layer (:mod:`medtwin.io.storage`, which re-exports both).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["data_home", "private_dir"]


def data_home(env: Mapping[str, str] | None = None) -> Path:
    """The installation's data folder: ``$MEDTWIN_HOME``, else ``$XDG_DATA_HOME/medtwin`` (``~/.local/share``).

    Holds the default SQLite database and, under ``keys/``, the signing key.

    Examples
    --------
    >>> data_home({"MEDTWIN_HOME": "/srv/mt"}).as_posix()
    '/srv/mt'
    """
    env = os.environ if env is None else env
    home = env.get("MEDTWIN_HOME")
    if home:
        return Path(home).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(base).expanduser() / "medtwin"


def private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` and every missing folder above it with mode 0700; return it.

    Folders that already exist are left as they are (medtwin never changes the
    mode of a folder it did not create: ``MEDTWIN_HOME`` may point anywhere);
    the files medtwin keeps in them are private themselves (0600). Safe when
    several processes create the same folders at once.

    Examples
    --------
    >>> import tempfile
    >>> d = private_dir(Path(tempfile.mkdtemp()) / "a" / "b")
    >>> oct(d.stat().st_mode & 0o777), oct(d.parent.stat().st_mode & 0o777)
    ('0o700', '0o700')
    """
    path = Path(path).expanduser()
    missing = []
    for level in (path, *path.parents):
        if level.exists():
            break
        missing.append(level)
    for level in reversed(missing):
        try:
            level.mkdir(mode=0o700)
        except FileExistsError:  # another process was quicker: it makes it private
            continue
        if os.name == "posix":
            os.chmod(level, 0o700)  # whatever the umask
    return path
