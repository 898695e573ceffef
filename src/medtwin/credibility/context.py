"""Context of use (COU) and the ASME V&V 40 risk-informed credibility framework.

A context of use says *what question* a model answers, *for whom* and *how much the decision leans on it*.
ASME V&V 40-2018 ("Assessing Credibility of Computational Modeling through Verification and Validation:
Application to Medical Devices") and the FDA guidance "Assessing the Credibility of Computational
Modeling and Simulation in Medical Device Submissions" (final, November 2023) rank the *model risk*
from two factors:

* model influence: the contribution of the model to the decision relative to other evidence
  (low / medium / high);
* decision consequence: the significance of an adverse outcome from an incorrect decision
  (low / medium / high).

:func:`model_risk` is the example 3×3 model-risk matrix of V&V 40 (five levels: 1 for low influence and low
consequence up to 5 for high and high), and :data:`GOALS` the credibility goals per credibility factor
that each risk level asks for.  The goals are this generator's rule, the same for every model (they are not
written per model); they grade V&V 40's factors (code verification, calculation verification, validation,
applicability) from the measured evidence.

A COU file (YAML, ``format: medtwin-context-of-use/1``) holds, besides the question, the context and the two
risk factors: the scenario the verification checks run on (``verification``), the comparator data
(``validation``), the decision and its safety criterion (``decision``), the uncertainty sources
(``uncertainty``) and the COU population's covariate ranges (``population``).  See docs/credibility.md.

Examples
--------
>>> model_risk("medium", "high")
4
>>> [model_risk("low", c) for c in LEVELS]
[1, 2, 3]
>>> cou = shipped_context("pk1_iv_pheno")
>>> cou.model, cou.risk
('pk1_iv', 4)
"""

from __future__ import annotations

import importlib.resources
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from medtwin.core.events import DoseEvent, Regimen
from medtwin.errors import DataError

__all__ = ["FORMAT", "GOALS", "LEVELS", "ContextOfUse", "goals_for", "load_context", "model_risk",
           "regimen_from_spec", "shipped_context", "shipped_contexts"]

#: The format tag of a COU file.
FORMAT = "medtwin-context-of-use/1"
#: Levels of model influence and of decision consequence (V&V 40).
LEVELS = ("low", "medium", "high")
_PACKAGE = "medtwin.data.contexts"

#: Credibility goals per V&V 40 credibility factor and model risk (1-5).  Each entry is
#: ``(factor, {risk: goal})``; a goal is a dict of the thresholds the evidence is graded against.
#:
#: * code verification: the closed-form / mass-balance relative error bound and whether the observed
#:   order of the fixed-step methods must match the nominal one (|observed - nominal| <= 0.15);
#: * calculation verification: relative error of the production solver vs a tighter solve;
#: * validation: at least ``min_obs`` held-out observations, coverage of the central 90 % prediction
#:   interval inside its binomial 95 % range, and (from risk 4) every calibration level inside its range;
#: * applicability: the COU population's covariates inside the validation data's ranges (from risk 3).
GOALS = {
    "code verification": {1: {"closed_form_rtol": 1e-4, "order": False},
                          2: {"closed_form_rtol": 1e-5, "order": True},
                          3: {"closed_form_rtol": 1e-6, "order": True},
                          4: {"closed_form_rtol": 1e-6, "order": True},
                          5: {"closed_form_rtol": 1e-7, "order": True}},
    "calculation verification": {1: {"solver_rtol": 1e-3}, 2: {"solver_rtol": 1e-4}, 3: {"solver_rtol": 1e-5},
                                 4: {"solver_rtol": 1e-6}, 5: {"solver_rtol": 1e-6}},
    "validation": {1: {"min_obs": 10, "calibration": False}, 2: {"min_obs": 20, "calibration": False},
                   3: {"min_obs": 40, "calibration": False}, 4: {"min_obs": 60, "calibration": True},
                   5: {"min_obs": 100, "calibration": True}},
    "applicability": {1: {"inside_required": False}, 2: {"inside_required": False}, 3: {"inside_required": True},
                      4: {"inside_required": True}, 5: {"inside_required": True}},
}


def model_risk(influence: str, consequence: str) -> int:
    """Model risk 1 (lowest) to 5 of the V&V 40 3×3 matrix: rank(influence) + rank(consequence) + 1 (ranks 0-2).

    Raises
    ------
    DataError
        A level that is not low, medium or high.
    """
    for name, value in (("model_influence", influence), ("decision_consequence", consequence)):
        if value not in LEVELS:
            raise DataError(f"context of use: {name} must be one of {', '.join(LEVELS)}, not {value!r}")
    return LEVELS.index(influence) + LEVELS.index(consequence) + 1


def goals_for(risk: int) -> dict[str, dict]:
    """The credibility goal of every factor at model risk ``risk`` (1-5)."""
    if int(risk) not in range(1, 6):
        raise DataError(f"model risk must be 1-5, got {risk!r}")
    return {factor: dict(levels[int(risk)]) for factor, levels in GOALS.items()}


def regimen_from_spec(events) -> Regimen:
    """A Regimen from a COU's list of dose events ``{time, amount, cmt?, rate?, ii?, addl?}`` (h, mg, mg/h)."""
    if not isinstance(events, (list, tuple)) or not events:
        raise DataError(f"context of use: a regimen is a non-empty list of dose events, got {events!r}")
    allowed = {"time", "amount", "cmt", "rate", "ii", "addl", "ss"}
    out = []
    for k, event in enumerate(events):
        if not isinstance(event, Mapping) or set(event) - allowed or "time" not in event:
            raise DataError(f"context of use: dose event {k + 1} must be a mapping with time and some of "
                            f"{sorted(allowed)}, got {event!r}")
        out.append(DoseEvent(**{key: (int(v) if key in ("cmt", "addl", "ss") else float(v))
                                for key, v in event.items()}))
    return Regimen(tuple(out))


@dataclass(frozen=True)
class ContextOfUse:
    """A parsed COU file; ``data`` keeps the mapping as read (it is what a recorded run stores).

    Attributes
    ----------
    name, model, question, context : str
        Identity, the library model the COU is about, the question of interest and the context of use.
    influence, consequence : str
        ``low`` | ``medium`` | ``high`` (with rationales in ``data``).
    risk : int
        :func:`model_risk` of the two.
    data : dict
        The whole file.
    """

    name: str
    model: str
    question: str
    context: str
    influence: str
    consequence: str
    risk: int
    data: dict = field(repr=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ContextOfUse:
        """Check and parse a COU mapping (DataError naming the missing or bad field)."""
        if not isinstance(data, Mapping):
            raise DataError(f"a context of use is a mapping, not {type(data).__name__}")
        try:  # plain JSON data with sorted keys: the report is the same whether read from YAML or a stored spec
            data = json.loads(json.dumps(data, sort_keys=True, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise DataError(f"context of use: not plain data ({exc})") from None
        if data.get("format") != FORMAT:
            raise DataError(f"context of use: format must be {FORMAT!r}, got {data.get('format')!r}")
        required = ("name", "model", "question_of_interest", "context_of_use", "model_influence",
                    "decision_consequence", "verification", "decision", "uncertainty", "population")
        missing = [k for k in required if k not in data]
        if missing:
            raise DataError(f"context of use: missing field(s) {', '.join(missing)}")
        for key in ("verification", "decision", "uncertainty", "population"):
            if not isinstance(data[key], Mapping):
                raise DataError(f"context of use: {key} must be a mapping")
        risk = model_risk(str(data["model_influence"]), str(data["decision_consequence"]))
        return cls(str(data["name"]), str(data["model"]), str(data["question_of_interest"]).strip(),
                   str(data["context_of_use"]).strip(), str(data["model_influence"]),
                   str(data["decision_consequence"]), risk, dict(data))

    def section(self, key: str) -> dict:
        """A sub-mapping of the file (empty when absent)."""
        value = self.data.get(key) or {}
        if not isinstance(value, Mapping):
            raise DataError(f"context of use: {key} must be a mapping")
        return dict(value)

    @property
    def seed(self) -> int:
        """Base seed of every random stream of the report (``settings.seed``, default 0)."""
        return int(self.section("settings").get("seed", 0))


def load_context(path: str | os.PathLike) -> ContextOfUse:
    """Read a COU file (YAML or JSON)."""
    from medtwin.io.textfile import load_mapping

    return ContextOfUse.from_mapping(load_mapping(Path(path), what="context of use"))


def shipped_contexts() -> list[str]:
    """Names of the COU files shipped in ``medtwin/data/contexts``."""
    folder = importlib.resources.files(_PACKAGE)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def shipped_context_path(name: str) -> Path:
    """Path of a shipped COU file."""
    if name not in shipped_contexts():
        raise DataError(f"no shipped context of use {name!r}; shipped: {', '.join(shipped_contexts())}")
    return Path(str(importlib.resources.files(_PACKAGE) / f"{name}.yaml"))


def shipped_context(name: str) -> ContextOfUse:
    """A shipped COU, parsed."""
    return load_context(shipped_context_path(name))
