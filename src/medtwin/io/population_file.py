"""Population model files (YAML or JSON): load, save and the populations shipped with medtwin.

The file is :meth:`medtwin.core.population.Population.to_dict` written as YAML
(``.yaml``/``.yml``) or JSON (``.json``); ``format: medtwin-population/1``.
Fields, with units carried next to the numbers:

``name``, ``description``, ``citation``
    Identity and the literature source of the values.
``model``
    Library model (e.g. ``pk1_iv``); ``covariates``: covariate -> unit.
``thetas``
    List of ``{name, value, unit, lower?, upper?, fixed?, description?}``.
``typical``
    Model parameter -> the theta that is its typical value.
``effects``
    List of ``{parameter, covariate, form, theta, reference?, condition?, clip?}``
    (forms: ``power``, ``exponential``, ``linear``, ``categorical``).
``iiv``
    ``{parameters: [...], omega: [[...]]}``: Ω of the log-normal η (variances, log scale).
``iov`` (optional)
    ``{parameters, omega, occasion, timing?}`` (timing ``record``, the default, or ``nonmem``:
    :class:`medtwin.core.population.InterOccasion`).
``residual``
    ``{model, additive_sd, proportional_sd, output, unit}``: SDs (σ² = SD²).
``estimation`` (optional)
    How the values were obtained (method, objective function value, software).

Examples
--------
>>> pop = load_population(shipped_population_path("pheno"))
>>> pop.model, pop.iiv, round(pop.theta("TVCL").value, 8)
('pk1_iv', ('CL', 'V'), 0.00469555)
>>> sorted(shipped_populations())
['pheno', 'pheno_initial', 'vancomycin_buelga2005', 'vancomycin_goti2018', 'vancomycin_thomson2009']
>>> [p.name for p in drug_populations("vancomycin")]
['vancomycin_buelga2005', 'vancomycin_goti2018', 'vancomycin_thomson2009']

A population file may declare its ``drug``; all shipped files of a drug are that drug's candidate priors
(:func:`drug_populations`, used by ``--population DRUG`` for model averaging).
"""

from __future__ import annotations

import importlib.resources
import json
import os
from pathlib import Path

from medtwin.core.population import Population
from medtwin.errors import DataError, PopulationError
from medtwin.io.textfile import load_mapping

__all__ = ["drug_population_paths", "drug_populations", "load_population", "save_population", "shipped_drugs",
           "shipped_populations", "shipped_population_path"]

_PACKAGE = "medtwin.data.populations"


def _yaml():
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("YAML population files need pyyaml: pip install pyyaml") from exc
    return yaml


def _is_json(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def load_population(path: str | os.PathLike) -> Population:
    """Read a population file (YAML, or JSON by the ``.json`` suffix).

    Raises
    ------
    DataError
        The file cannot be read (missing, binary, not UTF-8, empty) or parsed, or its top level is not a mapping.
    PopulationError
        The content is inconsistent (the message names the field).
    """
    path = Path(path)
    data = load_mapping(path, what="population file", fmt="json" if _is_json(path) else "yaml")
    try:
        return Population.from_dict(data)
    except PopulationError as exc:
        raise PopulationError(f"{path.name}: {exc}") from None


def save_population(population: Population, path: str | os.PathLike) -> Path:
    """Write ``population`` as YAML (or JSON for a ``.json`` path); returns the path."""
    path = Path(path)
    data = population.to_dict()
    if _is_json(path):
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = _yaml().safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
    path.write_text(text, encoding="utf-8")
    return path


def shipped_populations() -> list[str]:
    """Names of the population files shipped in ``medtwin/data/populations``."""
    folder = importlib.resources.files(_PACKAGE)
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith(".yaml"))


def shipped_population_path(name: str) -> Path:
    """Path of a shipped population file (raises DataError with the known names)."""
    path = Path(str(importlib.resources.files(_PACKAGE) / f"{name}.yaml"))
    if not path.exists():
        raise DataError(f"no shipped population {name!r}; shipped: {shipped_populations()}")
    return path


def _shipped_drug_table() -> dict[str, list[Path]]:
    """Drug -> paths of the shipped population files that declare it (sorted by file name)."""
    table: dict[str, list[Path]] = {}
    for name in shipped_populations():
        path = shipped_population_path(name)
        drug = load_population(path).drug
        if drug:
            table.setdefault(drug, []).append(path)
    return table


def shipped_drugs() -> dict[str, int]:
    """Drug -> number of shipped population files that declare it.

    Examples
    --------
    >>> shipped_drugs()["vancomycin"] >= 3
    True
    """
    return {drug: len(paths) for drug, paths in sorted(_shipped_drug_table().items())}


def drug_population_paths(drug: str) -> list[Path]:
    """Paths of every shipped population file whose ``drug`` is ``drug`` (sorted by file name).

    Raises
    ------
    DataError
        No shipped population file declares ``drug`` (the message lists the drugs that have files).
    """
    table = _shipped_drug_table()
    if drug not in table:
        known = ", ".join(f"{d} ({len(p)} file{'s' if len(p) > 1 else ''})" for d, p in sorted(table.items()))
        raise DataError(f"no shipped population file declares drug {drug!r}; drugs with population files: "
                        f"{known or 'none'}")
    return list(table[drug])


def drug_populations(drug: str) -> list[Population]:
    """Every shipped population of ``drug`` (the candidate priors of model averaging), sorted by file name."""
    return [load_population(path) for path in drug_population_paths(drug)]
