"""Public names loaded on first use (PEP 562), for the packages whose modules cost seconds to import.

Examples
--------
>>> namespace = {}
>>> getattr_, dir_ = lazy_exports("pkg", {"sqrt": "math"}, namespace)
>>> getattr_("sqrt")(9.0), "sqrt" in namespace, dir_()
(3.0, True, ['sqrt'])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """A package's ``__getattr__`` and ``__dir__`` for *names* (public name -> defining module).

    The first look-up of a name imports its module and stores the value in *namespace* (the package's
    ``globals()``), so later look-ups skip ``__getattr__``.
    """

    def __getattr__(name: str):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
