"""The model library: every model by name.

Examples
--------
>>> "pk2_iv" in list_models()
True
"""

from __future__ import annotations

from functools import lru_cache

from medtwin.core.model import Model
from medtwin.errors import ModelError


@lru_cache(maxsize=1)
def _library() -> dict[str, Model]:
    from medtwin.models import pk

    models: list[Model] = list(pk.pk_models())
    for extra in ("pd", "pbpk", "vancomycin", "glucose"):
        try:
            module = __import__(f"medtwin.models.{extra}", fromlist=["library_models"])
        except ModuleNotFoundError as exc:  # pragma: no cover - only while a family is being added
            if exc.name != f"medtwin.models.{extra}":
                raise
            continue
        models.extend(module.library_models())
    return {m.name: m for m in models}


def list_models() -> list[str]:
    """Names of every library model, sorted."""
    return sorted(_library())


def get_model(name: str) -> Model:
    """The library model called ``name`` (raises ModelError with the known names)."""
    try:
        return _library()[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None
