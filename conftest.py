"""Test-run settings for the whole repository (tests/ and the doctests in src/medtwin).

* One JAX compilation cache on disk for every test process (pytest-xdist workers, CLI subprocesses) and
  every later run.
* The slow tier: doctests that run a sampler are marked ``slow`` like the long tests (``-m slow``).
* pytest-xdist (``-n auto`` in pyproject's addopts): each file's tests stay in one worker (``--dist
  loadfile``: a module's fits and compiled samplers are built once), the slowest files start first
  (``--no-loadscope-reorder``), and each worker's numba and BLAS threads are its share of the cores (set
  before a test imports them).  (``--dist loadgroup`` does not group with pytest 9 and pytest-xdist 3.8:
  the ``@group`` suffix it puts on node ids is lost, and a module fixture ran in both workers.)
"""

import os

import pytest

#: Compilations shorter than this are not written to the persistent cache (reading small entries back
#: costs about as much as compiling them).
JAX_CACHE_MIN_COMPILE_SECONDS = "0.2"


def pytest_configure(config):
    """Point JAX's persistent compilation cache at the pytest cache folder, unless the caller chose one.

    Environment variables (read when jax is first imported, and inherited by the CLI subprocesses that
    some tests start): a compiled program — the NUTS sampler, a MAP potential, a diffrax solve — is
    compiled once per machine instead of once per process. ``JAX_COMPILATION_CACHE_DIR=`` (empty) turns
    it off.
    """
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
        folder = cache.mkdir("jax-compilation-cache") if cache is not None else None
        if folder is not None:
            os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", JAX_CACHE_MIN_COMPILE_SECONDS)
    worker = getattr(config, "workerinput", None)
    if worker is not None:  # a pytest-xdist worker: its share of the cores for numba's and BLAS's threads
        share = str(max(1, (os.cpu_count() or 1) // int(worker.get("workercount", 1))))
        for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = share


#: Module docstring examples that run a sampler: in the slow tier (``-m slow``, which .ci/run runs too),
#: not in the default run.
SLOW_DOCTESTS = {
    "medtwin.infer.hierarchical",  # fit_nuts on 6 subjects: ~100 s, two thirds of it compiling the sampler
}

#: Files whose tests take minutes (measured on the 2-core CI machine), started first so that with xdist
#: (``--dist loadfile --no-loadscope-reorder``) the longest file never starts last.
HEAVIEST_FIRST = (
    "tests/validation/test_pheno_nuts.py",       # slow: 4 NUTS chains on 59 subjects, ~10 min
)


def pytest_itemcollected(item):
    """Mark the slow doctests (before ``-m`` selects)."""
    if item.name in SLOW_DOCTESTS:
        item.add_marker(pytest.mark.slow)


def _relative(item) -> str:
    path, root = item.path, item.config.rootpath
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else item.nodeid.split("::")[0]


def pytest_collection_modifyitems(config, items):
    """Start the slowest files first: HEAVIEST_FIRST, then every file with a slow test (minutes each,
    ``-m slow``), so that in a run of both tiers the longest one does not start last.  Each file's tests
    stay together and in order; without xdist only the order of the files changes."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}

    def rank(item):
        name = _relative(item)
        return (HEAVIEST_FIRST.index(name) if name in HEAVIEST_FIRST else len(HEAVIEST_FIRST),
                item.path not in slow_files)

    items.sort(key=rank)


@pytest.fixture
def fresh_jax_compilation():
    """No persistent compilation cache in this test: every JAX program it runs is compiled afresh (for
    tests whose point is that a re-run in a new process, a new compilation, gives the same numbers)."""
    import jax
    from jax._src import compilation_cache  # reset_cache: the cache is otherwise latched on per process

    compilation_cache.reset_cache()
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", True)
        compilation_cache.reset_cache()
