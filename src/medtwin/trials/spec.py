"""The trial spec: a YAML file naming the cohort, the truth, the arms, randomisation, endpoints and strata.

Format ``medtwin-trial/1`` (units in brackets; every field is checked here, errors name the field)::

    format: medtwin-trial/1
    name: vancomycin_twin_vs_label
    scenario: vancomycin            # pk | vancomycin | glucose (which arm runner and endpoints)
    patients: 60                    # cohort size (``--patients`` overrides)
    seed: 2026                      # trial seed (``--seed`` overrides)
    chunk_size: 20                  # patients per chunk of the executor
    cohort: {inclusion: {CRCL: [20, 150], AGE: [18, 90]}, fixed: {DIAL: 0}}   # see medtwin.trials.cohort
    truth: {population: <inline population or a shipped population's name>}  # the virtual patients' θ
    arms:                           # 2+ arms; the policies each scenario knows are in medtwin.trials.arms
      - {name: label, policy: label}
      - {name: twin, policy: twin, n_draws: 200}
    randomisation: {weights: [1, 1], method: block, block_size: 4}   # or method: simple
    settings: {days: 4}             # scenario settings (VancoScenario / GlucoseScenario fields, pk window)
    primary: {endpoint: attainment, treatment: twin, control: label}
    strata: {CRCL: [20, 60, 90, 150], AGE: [18, 50, 70, 90], WT: [35, 70, 90, 250]}  # band edges
    analysis: {bootstrap: 0, cate: true}

Examples
--------
>>> spec = load_trial_spec(shipped_trial_path("vancomycin_twin_vs_label"))
>>> spec.scenario, [a.name for a in spec.arms], spec.with_patients(6).patients
('vancomycin', ['label', 'twin'], 6)
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from medtwin.errors import DataError
from medtwin.trials.cohort import DERIVED, SAMPLED, CohortSpec

__all__ = ["FORMAT", "SCENARIOS", "Arm", "TrialSpec", "load_trial_spec", "shipped_trial_path", "shipped_trials"]

FORMAT = "medtwin-trial/1"
SCENARIOS = ("pk", "vancomycin", "glucose")
_FIELDS = {"format", "name", "description", "scenario", "patients", "seed", "chunk_size", "cohort", "truth", "twin",
           "arms", "randomisation", "settings", "primary", "strata", "analysis"}


@dataclass(frozen=True)
class Arm:
    """One arm: its name, the policy (a name the scenario knows) and the policy's options."""

    name: str
    policy: str
    options: dict = field(default_factory=dict)


def _need(data: Mapping, key: str, kind, where: str = "trial"):
    if key not in data:
        raise DataError(f"{where}: field {key!r} is required")
    value = data[key]
    if not isinstance(value, kind):
        raise DataError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


@dataclass(frozen=True, eq=False)
class TrialSpec:
    """A parsed, checked trial spec (see the module docstring for the format); ``data`` is the source mapping."""

    name: str
    scenario: str
    patients: int
    seed: int
    chunk_size: int
    cohort: CohortSpec
    arms: tuple
    weights: tuple
    method: str
    block_size: int
    settings: dict
    primary: dict
    strata: dict
    analysis: dict
    data: dict

    @classmethod
    def from_dict(cls, data: Mapping) -> "TrialSpec":
        data = dict(data)
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise DataError(f"trial: unknown fields {unknown}; known {sorted(_FIELDS)}")
        if data.get("format") != FORMAT:
            raise DataError(f"trial.format: must be {FORMAT!r}, got {data.get('format')!r}")
        scenario = _need(data, "scenario", str)
        if scenario not in SCENARIOS:
            raise DataError(f"trial.scenario: one of {SCENARIOS}, got {scenario!r}")
        patients, seed = int(_need(data, "patients", int)), int(_need(data, "seed", int))
        chunk_size = int(data.get("chunk_size", 1000))
        if patients < 1 or chunk_size < 1 or seed < 0:
            raise DataError("trial: patients and chunk_size must be >= 1 and seed >= 0")
        if "population" not in dict(_need(data, "truth", dict)):
            raise DataError("trial.truth: give population (a shipped population's name or an inline population)")
        arms = []
        for k, arm in enumerate(_need(data, "arms", list)):
            arm = dict(arm)
            if not isinstance(arm.get("name"), str) or not isinstance(arm.get("policy"), str):
                raise DataError(f"trial.arms[{k}]: needs a name and a policy")
            arms.append(Arm(arm.pop("name"), arm.pop("policy"), arm))
        names = [a.name for a in arms]
        if len(arms) < 2 or len(set(names)) != len(names):
            raise DataError(f"trial.arms: need two or more arms with distinct names, got {names}")
        rand = dict(data.get("randomisation") or {})
        weights = tuple(float(w) for w in rand.get("weights", [1] * len(arms)))
        method, block = str(rand.get("method", "block")), int(rand.get("block_size", 2 * len(arms)))
        if len(weights) != len(arms) or min(weights) <= 0:
            raise DataError(f"trial.randomisation.weights: one positive weight per arm ({len(arms)}), got {weights}")
        if method not in ("simple", "block"):
            raise DataError(f"trial.randomisation.method: 'simple' or 'block', got {method!r}")
        if method == "block":
            per = [w * block / sum(weights) for w in weights]
            if any(abs(p - round(p)) > 1e-9 or round(p) < 1 for p in per):
                raise DataError(f"trial.randomisation.block_size: {block} does not split into whole numbers of "
                                f"patients by the weights {weights}")
        primary = dict(_need(data, "primary", dict))
        for key in ("endpoint", "treatment", "control"):
            if not isinstance(primary.get(key), str):
                raise DataError(f"trial.primary.{key}: required (a string)")
        for key in ("treatment", "control"):
            if primary[key] not in names:
                raise DataError(f"trial.primary.{key}: {primary[key]!r} is not an arm ({names})")
        strata = {str(k): [float(e) for e in v] for k, v in dict(data.get("strata") or {}).items()}
        for name, edges in strata.items():
            if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
                raise DataError(f"trial.strata.{name}: give increasing band edges (2 or more), got {edges}")
        try:
            cohort = CohortSpec.from_dict(data.get("cohort"))
        except DataError as exc:
            raise DataError(f"trial.{exc}") from None
        from medtwin.trials.endpoints import check_strata, scenario_endpoints

        check_strata(strata, SAMPLED + DERIVED + tuple(cohort.fixed))  # refused at load, before anything runs
        if primary["endpoint"] not in scenario_endpoints(scenario):
            raise DataError(f"trial.primary.endpoint: {primary['endpoint']!r} is not an endpoint of scenario "
                            f"{scenario!r} ({scenario_endpoints(scenario)})")
        return cls(str(_need(data, "name", str)), scenario, patients, seed, chunk_size, cohort, tuple(arms), weights,
                   method, block, dict(data.get("settings") or {}), primary, strata,
                   dict(data.get("analysis") or {}), data)

    def with_patients(self, n: int | None) -> "TrialSpec":
        """The same trial with ``n`` patients (None: unchanged)."""
        return self if n is None else TrialSpec.from_dict({**self.data, "patients": int(n)})

    def with_seed(self, seed: int | None) -> "TrialSpec":
        """The same trial with another seed (None: unchanged)."""
        return self if seed is None else TrialSpec.from_dict({**self.data, "seed": int(seed)})

    def with_chunk_size(self, size: int | None) -> "TrialSpec":
        """The same trial run in chunks of ``size`` patients (the results do not depend on it)."""
        if size is None:
            return self
        return replace(self, chunk_size=int(size), data={**self.data, "chunk_size": int(size)})

    @property
    def baseline(self) -> tuple:
        """Names of the pre-randomisation (baseline) covariates: the only variables strata may use."""
        return SAMPLED + DERIVED + tuple(self.cohort.fixed)

    def arm_index(self, name: str) -> int:
        return [a.name for a in self.arms].index(name)


def load_trial_spec(path) -> TrialSpec:
    """Read a trial spec YAML file (DataError naming the file when it cannot be read or is invalid)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: cannot read the trial spec ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a trial spec is a YAML mapping")
    try:
        return TrialSpec.from_dict(data)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def shipped_trials() -> list[str]:
    """Names of the trial specs shipped in ``medtwin/data/trials``."""
    folder = importlib.resources.files("medtwin.data.trials")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def shipped_trial_path(name: str) -> Path:
    """Path of a shipped trial spec (DataError with the known names otherwise)."""
    path = Path(str(importlib.resources.files("medtwin.data.trials") / f"{name}.yaml"))
    if not path.exists():
        raise DataError(f"no shipped trial {name!r}; shipped: {shipped_trials()}")
    return path
