"""JAX's persistent compilation cache for medtwin's command line (and any other process edge).

A ``medtwin recommend`` process compiles about 30 XLA programs (the MAP
potential, its gradient and Hessian, the Laplace draws, the posterior
predictive); without a disk cache every new process compiles them again, about
10 s of a 20 s run on two cores.  :func:`enable_persistent_jax_cache` points
JAX's persistent cache at ``$MEDTWIN_HOME/jax-cache`` (see
:func:`medtwin.io.storage.data_home`), so the second process reads the compiled
programs back instead.  The numba kernels already keep theirs on disk.

It is called once, at the start of a command-line process (``medtwin``'s click
group); the library itself sets no global: importing medtwin changes nothing,
and a program that uses medtwin as a library chooses its own JAX settings.

Rules, in order:

1. ``MEDTWIN_COMPILE_CACHE=0`` (or ``off``, ``false``, ``no``): medtwin sets
   nothing (JAX's own ``JAX_COMPILATION_CACHE_DIR`` still applies if set);
2. ``JAX_COMPILATION_CACHE_DIR`` already in the environment (CI, the test
   run; empty means off): respected as it is;
3. JAX already imported (a test run, a notebook, an application embedding the
   CLI): its settings are left alone;
4. otherwise the folder is created private (mode 0700: a compiled program may
   hold constants derived from the data) and the environment defaults that
   JAX reads when it is first imported are set: the folder, a minimum compile
   time of 0 s (each of ``recommend``'s programs compiles in 0.1-0.5 s, all
   below JAX's default threshold of 1 s) and an upper bound on the folder's
   size (:data:`MAX_CACHE_BYTES`, least recently used entries go first; JAX
   needs the ``filelock`` package for that, without it the folder is unbounded:
   a ``recommend`` adds 28 entries, about 280 kB, per new model or shape).
   A folder that cannot be created leaves caching off (it is an optimisation,
   never a reason to fail).

The same edge keeps each model's numba callbacks (vector field, initial state,
outputs, system matrix: :func:`medtwin.core.kernels.model_callbacks`, about
0.5 s of compilation per model and process) on disk too:
:func:`warm_model_callbacks` builds them once per process with the folder
``$MEDTWIN_HOME/numba-callbacks`` (:func:`numba_callback_folder`), under the
same switch (``MEDTWIN_COMPILE_CACHE=0`` turns it off).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import types
from collections.abc import MutableMapping
from pathlib import Path

from medtwin.io.paths import data_home, private_dir


__all__ = ["CACHE_SWITCH", "MAX_CACHE_BYTES", "enable_persistent_jax_cache", "jax_cache_folder",
           "numba_callback_folder", "warm_block_callbacks", "warm_model_callbacks"]

#: Environment variable that switches medtwin's on-disk JAX cache off (``0``, ``off``, ``false``, ``no``).
CACHE_SWITCH = "MEDTWIN_COMPILE_CACHE"
#: Upper bound of the cache folder (bytes); JAX evicts the least recently used entries above it.
MAX_CACHE_BYTES = 2 * 1024**3
_OFF = {"0", "off", "false", "no"}


def jax_cache_folder(env: MutableMapping[str, str] | None = None) -> Path:
    """The folder medtwin's command line keeps JAX's compiled programs in: ``data_home(env) / "jax-cache"``.

    Examples
    --------
    >>> jax_cache_folder({"MEDTWIN_HOME": "/srv/mt"}).as_posix()
    '/srv/mt/jax-cache'
    """
    return data_home(env) / "jax-cache"


def enable_persistent_jax_cache(env: MutableMapping[str, str] | None = None) -> Path | None:
    """Switch JAX's persistent compilation cache on for this process (rules in the module docstring).

    Parameters
    ----------
    env : mutable mapping, optional
        The environment to read and to write JAX's defaults into (default
        ``os.environ``; JAX reads them when it is first imported).

    Returns
    -------
    pathlib.Path or None
        The cache folder in use, or None when no persistent cache is on (or,
        JAX being imported already, medtwin left its settings alone).

    Examples
    --------
    >>> import tempfile
    >>> env = {"MEDTWIN_HOME": tempfile.mkdtemp()}
    >>> folder = enable_persistent_jax_cache(env)
    >>> folder == jax_cache_folder(env) and env["JAX_COMPILATION_CACHE_DIR"] == str(folder)
    True
    >>> enable_persistent_jax_cache({"MEDTWIN_HOME": "/srv/mt", "MEDTWIN_COMPILE_CACHE": "off"}) is None
    True
    >>> enable_persistent_jax_cache({"JAX_COMPILATION_CACHE_DIR": "/ci/cache"}).as_posix()
    '/ci/cache'
    """
    real = env is None
    env = os.environ if env is None else env
    if env.get(CACHE_SWITCH, "").strip().lower() in _OFF:
        return None
    if "JAX_COMPILATION_CACHE_DIR" in env:
        chosen = env["JAX_COMPILATION_CACHE_DIR"]
        return Path(chosen) if chosen else None
    if real and "jax" in sys.modules:
        return None
    try:
        folder = private_dir(jax_cache_folder(env))
    except OSError:
        return None
    env["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if importlib.util.find_spec("filelock") is not None:  # JAX needs it to bound the folder's size
        env.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(MAX_CACHE_BYTES))
    return folder


def numba_callback_folder(env: MutableMapping[str, str] | None = None) -> Path:
    """The folder medtwin's command line keeps models' numba callbacks in: ``data_home(env) / "numba-callbacks"``.

    Examples
    --------
    >>> numba_callback_folder({"MEDTWIN_HOME": "/srv/mt"}).as_posix()
    '/srv/mt/numba-callbacks'
    """
    return data_home(env) / "numba-callbacks"


def warm_model_callbacks(model, env: MutableMapping[str, str] | None = None) -> Path | None:
    """Build ``model``'s numba callbacks for this process from the on-disk folder (compiling only what is new).

    Called at a process edge (the command line) before the model is simulated; the callbacks are kept on the
    model object as :func:`medtwin.core.simulate.model_callbacks` keeps them, so every later simulation of this
    process uses them.  Nothing is done when the model already has them or ``MEDTWIN_COMPILE_CACHE`` is off; a
    folder that cannot be created leaves them to be compiled in memory as before.

    Parameters
    ----------
    model : Model
    env : mapping, optional
        The environment (default ``os.environ``): ``MEDTWIN_HOME``, ``MEDTWIN_COMPILE_CACHE``.

    Returns
    -------
    pathlib.Path or None
        The folder used, or None when none was.

    Examples
    --------
    >>> import tempfile
    >>> from medtwin.models import get_model
    >>> model = get_model("pk1_iv").with_changes()  # a fresh copy: no callbacks yet
    >>> folder = warm_model_callbacks(model, {"MEDTWIN_HOME": tempfile.mkdtemp()})
    >>> sorted(p.suffix for p in folder.iterdir() if p.is_file())
    ['.py']
    >>> warm_model_callbacks(model, {"MEDTWIN_HOME": tempfile.mkdtemp()}) is None  # already built
    True
    """
    from medtwin.core import kernels
    from medtwin.core.compile_cache import cached, entries, key_for
    env = os.environ if env is None else env
    if env.get(CACHE_SWITCH, "").strip().lower() in _OFF or key_for(model, "numba-callbacks") in entries(model):
        return None
    try:
        folder = private_dir(numba_callback_folder(env))
    except OSError:
        return None
    namespace = kernels.callback_namespace(model)
    source = kernels.callback_source(model)
    module = _module_in_folder(folder, "callbacks", model, source, namespace, "medtwin.core.kernels")
    cached(model, "numba-callbacks", (), lambda: kernels.compile_callbacks(module.__dict__, cache=True))
    return folder


def warm_block_callbacks(model, env: MutableMapping[str, str] | None = None) -> Path | None:
    """Build ``model``'s block-kernel callbacks (:mod:`medtwin.core.block_dopri`) from the on-disk folder.

    The block kernel's per-model callbacks (the vector field, outputs and the fused Dormand–Prince step for 32
    lanes, the model inlined) take 5-13 s to compile; a process edge that expects a big nonlinear cohort
    (``simulate(kernel="auto")`` uses them from :data:`~medtwin.core.block_dopri.MIN_PATIENTS` patients on)
    calls this first, so only the first process of an installation compiles them.  Same folder, switch and
    rules as :func:`warm_model_callbacks`: the generated module file is named by a hash of the model's digest,
    the generated source, numba's version, the compile options and the functions it calls; numba's own index
    (next to it, in ``__pycache__``) adds the CPU and Python version.  The entry goes into the model's store
    under the key :func:`medtwin.core.simulate.block_callbacks` reads.

    Returns
    -------
    pathlib.Path or None
        The folder used, or None when none was (switch off, callbacks already built, folder not creatable).

    Examples
    --------
    >>> import tempfile
    >>> from medtwin.models import get_model
    >>> model = get_model("pk1_iv_mm").with_changes()  # a fresh copy: no block callbacks yet
    >>> warm_block_callbacks(model, {"MEDTWIN_HOME": tempfile.mkdtemp(), "MEDTWIN_COMPILE_CACHE": "off"}) is None
    True
    """
    from medtwin.core import block_dopri
    from medtwin.core.compile_cache import cached, entries, key_for
    env = os.environ if env is None else env
    options = (block_dopri.BLOCK,)
    if (env.get(CACHE_SWITCH, "").strip().lower() in _OFF
            or key_for(model, "numba-block-callbacks", options) in entries(model)):
        return None
    try:
        folder = private_dir(numba_callback_folder(env))
    except OSError:
        return None
    namespace = block_dopri.block_namespace(model)
    source = block_dopri.block_source(model)
    module = _module_in_folder(folder, "block", model, source, namespace, "medtwin.core.block_dopri",
                               block_dopri.BUILD_OPTIONS)
    cached(model, "numba-block-callbacks", options,
           lambda: block_dopri.compile_block_callbacks(module.__dict__, cache=True))
    return folder


def _module_in_folder(folder: Path, kind: str, model, source: str, namespace: dict, origin: str,
                      options: str = "") -> types.ModuleType:
    """The module of generated ``source`` as a file of ``folder`` (written once), executed in ``namespace``.

    The file name hashes everything the compiled code depends on: model digest, source, numba's version,
    ``options`` and the fingerprints of the functions in ``namespace``.  numba's cached code names its module
    and imports it when loaded: the file is that module.
    """
    parts = [model.digest(), source, numba_version()] + ([options] if options else [])  # (old keys kept)
    parts += [_fingerprint(namespace[k]) for k in sorted(namespace) if k != "nb"]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
    path = folder / f"{kind}_{key}.py"
    if not path.exists():  # written once (numba's cache index is keyed by the file's stamp)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(f"# numba {kind} callbacks of model {model.name!r} ({origin})\n" + source)
        os.replace(partial, path)
    name = f"medtwin_numba_{kind}_{key}"
    module = sys.modules.get(name) or types.ModuleType(name)
    module.__file__ = str(path)
    module.__dict__.update(namespace)
    sys.modules[name] = module
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module


def numba_version() -> str:
    import numba

    return numba.__version__


def _fingerprint(value, depth: int = 0) -> str:
    """What a compiled callback depends on beyond the model's digest: code, constants and closed-over values."""
    value = getattr(value, "py_func", value)  # a numba dispatcher: its Python function
    code = getattr(value, "__code__", None)
    if code is None or depth > 4:
        return repr(value)
    cells = [_fingerprint(c.cell_contents, depth + 1) for c in (value.__closure__ or ())]
    try:
        stat = os.stat(code.co_filename)  # the defining file's stamp, as numba's own cache checks it
        stamp = f"{stat.st_mtime_ns}:{stat.st_size}"
    except OSError:
        stamp = ""
    return repr((code.co_filename, stamp, code.co_code.hex(), repr(code.co_consts), cells))
