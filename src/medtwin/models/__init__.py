"""The model library: every model by name.

Examples
--------
>>> "pk2_iv" in list_models()
True
"""

from __future__ import annotations

from functools import lru_cache

from medtwin.core.model import Model
from medtwin.errors import ModelDigestError, ModelError


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


def model_reference(model: Model) -> dict:
    """How a stored value (twin file, run record, CLI output) names its model: name, digest and description.

    Examples
    --------
    >>> ref = model_reference(get_model("pk1_iv"))
    >>> sorted(ref), ref["name"]
    (['description', 'digest', 'name'], 'pk1_iv')
    """
    if not isinstance(model, Model):
        raise ModelError(f"expected a Model object, got {type(model).__name__}")
    return {"name": model.name, "digest": model.digest(), "description": model.description}


def resolve_model(reference, model: Model | None = None) -> Model:
    """The model a stored reference (:func:`model_reference`, or a bare name) points to, digest verified.

    Parameters
    ----------
    reference : mapping or str
        ``{"name", "digest", "description"}`` as written by :func:`model_reference`; a bare name (or a
        mapping without ``digest``) is resolved without a digest check.
    model : Model, optional
        The model to use instead of the library (a user-defined model); its name and digest must match
        the reference.

    Raises
    ------
    ModelError
        Unknown library model or a name mismatch.
    ModelDigestError
        A digest that differs (the model changed since the value was stored, or a different model was given);
        also a DataError.

    Examples
    --------
    >>> m = get_model("pk1_iv")
    >>> resolve_model(model_reference(m)) is m
    True
    >>> try:
    ...     resolve_model({"name": "pk1_iv", "digest": "0" * 64})
    ... except ModelError as exc:
    ...     print("definition changed" in str(exc))
    True
    """
    if isinstance(reference, str):
        reference = {"name": reference}
    if not hasattr(reference, "get") or not isinstance(reference.get("name"), str):
        raise ModelError(f"stored model reference must name a model (name, digest), got {reference!r}")
    name, digest = reference["name"], reference.get("digest")
    if model is None:
        try:
            model = get_model(name)
        except ModelError:
            raise ModelError(f"stored value was made with model {name!r}, which is not a library model: pass "
                             "the user-defined model as model= (known library models: "
                             f"{', '.join(list_models())})") from None
    elif not isinstance(model, Model):
        raise ModelError(f"model= must be a Model object, got {type(model).__name__}")
    elif model.name != name:
        raise ModelError(f"stored value was made with model {name!r}, but model= is {model.name!r}")
    if digest is not None and str(digest).removeprefix("sha256:") != model.digest():
        raise ModelDigestError(f"stored value was made with model {name} digest {str(digest)[:12]}..., but model "
                               f"{name} now has digest {model.digest()[:12]}...: the model definition changed; a "
                               "stored posterior or belief cannot be continued on a different model")
    return model
