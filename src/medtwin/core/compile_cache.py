"""One compile cache for every backend: compiled artefacts keyed by (model digest, backend, options).

What is cached: whatever a backend builds from a model definition and would
otherwise build again — numba C callbacks, jitted JAX functions, diffrax
integrators, compiled objectives, the well-posedness report.

Where it lives, and why there.  The core holds no module-level mutable state
(importing medtwin changes no global, and two models never see each other's
entries by accident), so the store is owned by the :class:`~medtwin.core.model.Model`
value it belongs to — its private ``_cache`` mapping, which lives and dies with
the model and is not carried over by :meth:`Model.with_changes` — and it is
read and written **only** through :func:`cached` here.  The key is
``(model digest, backend, options)``: the digest makes a key mean the same in
every process, so an on-disk layer outside the core (e.g. JAX's persistent
compilation cache, set up at the CLI edge) can key its files by the same
triple; ``backend`` names who built the entry (``"numba-callbacks"``,
``"jax-linear"``, ``"diffrax"`` ...) and ``options`` is a hashable tuple of
everything else the build depends on (tolerances, step budgets, solver).

The digest is computed once per model and remembered in the same store.

Examples
--------
>>> from medtwin.models import get_model
>>> m = get_model("pk1_iv")
>>> calls = []
>>> first = cached(m, "example", (1e-8,), lambda: calls.append(1) or "built")
>>> again = cached(m, "example", (1e-8,), lambda: calls.append(1) or "built")
>>> first, again, len(calls)
('built', 'built', 1)
>>> (m.digest(), "example", (1e-8,)) in entries(m)
True
"""

from __future__ import annotations

from typing import Callable, Hashable, TypeVar

__all__ = ["cached", "entries", "key_for"]

T = TypeVar("T")
_DIGEST = ("__digest__",)


def _store(model) -> dict:
    return model._cache


def key_for(model, backend: str, options: Hashable = ()) -> tuple:
    """The cache key ``(model digest, backend, options)`` (the digest is computed once per model)."""
    store = _store(model)
    digest = store.get(_DIGEST)
    if digest is None:
        digest = store[_DIGEST] = model.digest()
    return (digest, backend, options)


def cached(model, backend: str, options: Hashable, build: Callable[[], T]) -> T:
    """The entry of ``model`` for (``backend``, ``options``), built by ``build()`` on first use.

    Parameters
    ----------
    model : Model
        The model the artefact is compiled from (its store holds the entry).
    backend : str
        Who builds it, e.g. ``"numba-callbacks"``, ``"jax-linear"``, ``"diffrax"``.
    options : hashable
        Everything else the build depends on (tolerances, step budget, solver name ...).
    build : callable
        ``build() -> artefact``, called at most once per key.
    """
    key = key_for(model, backend, options)
    store = _store(model)
    if key not in store:
        store[key] = build()
    return store[key]


def entries(model) -> list[tuple]:
    """The keys currently cached for ``model`` (for inspection and tests)."""
    return [k for k in _store(model) if k != _DIGEST]
