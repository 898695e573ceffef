"""Run an in-silico trial: cohort → randomisation → arms → per-patient endpoint table, chunk by chunk.

:func:`trial_chunk` computes patients ``[start, stop)`` from the spec alone: covariates
(:func:`~medtwin.trials.cohort.sample_cohort`), the truth θ (:func:`~medtwin.trials.cohort.draw_theta`),
the arm (:func:`randomise`) and the arm's endpoints (:func:`~medtwin.trials.arms.run_arm`).  Every random
number of patient i is a function of (trial seed, i), so the table is bit-for-bit the same for any chunk
size and executor.  :func:`run_trial` streams the chunks through
:func:`medtwin.trials.execution.map_patients` and keeps only the endpoint rows.

Examples
--------
>>> from medtwin.trials.spec import TrialSpec
>>> spec = TrialSpec.from_dict(PK_EXAMPLE)
>>> result = run_trial(spec.with_patients(8))
>>> result.table.shape[0], sorted(set(result.table["arm_name"]))
(8, ['high', 'low'])
>>> result.table.equals(run_trial(spec.with_patients(8).with_chunk_size(3)).table)
True
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from medtwin.errors import DataError
from medtwin.trials.arms import check_arms, run_arm, spec_truth
from medtwin.trials.cohort import draw_theta, sample_cohort, uniforms
from medtwin.trials.endpoints import scenario_endpoints

__all__ = ["PK_EXAMPLE", "TrialResult", "randomise", "run_trial", "trial_chunk"]

#: A two-arm trial of fixed doses on a one-compartment IV model (the closed-form check of the docs and tests).
PK_EXAMPLE = {
    "format": "medtwin-trial/1", "name": "pk_dose_comparison", "scenario": "pk", "patients": 200, "seed": 1,
    "chunk_size": 100,
    "truth": {"population": {
        "format": "medtwin-population/1", "name": "pk1_demo", "model": "pk1_iv",
        "thetas": [{"name": "TVCL", "value": 5.0, "unit": "L/h", "lower": 0.0},
                   {"name": "TVV", "value": 50.0, "unit": "L", "lower": 0.0}],
        "typical": {"CL": "TVCL", "V": "TVV"}, "effects": [],
        "iiv": {"parameters": ["CL", "V"], "omega": [[0.09, 0.0], [0.0, 0.04]]},
        "residual": {"model": "proportional", "proportional_sd": 0.1, "output": "C", "unit": "mg/L"}}},
    "arms": [{"name": "low", "policy": "fixed", "dose_mg": 1000.0},
             {"name": "high", "policy": "fixed", "dose_mg": 1500.0}],
    "settings": {"window": [0.0, 240.0], "step_h": 0.05, "target": [150.0, 300.0]},
    "primary": {"endpoint": "auc", "treatment": "high", "control": "low"},
    "strata": {"CRCL": [20, 60, 90, 150], "AGE": [18, 50, 70, 90], "WT": [35, 70, 90, 250]},
}

#: Baseline columns of the per-patient table (all pre-randomisation).
BASELINE_COLUMNS = ("AGE", "SEX", "WT", "HT", "BMI", "SCR", "CRCL", "EGFR", "PRS")


def randomise(spec, start: int, stop: int) -> np.ndarray:
    """Arm index of patients ``[start, stop)`` (int array): patient i's arm depends on (seed, i) only.

    ``simple``: independent draws with P(arm) ∝ weight.  ``block``: consecutive blocks of ``block_size``
    patients hold each arm in proportion to its weight, in an order given by ranking the block's uniforms.

    Examples
    --------
    >>> from medtwin.trials.spec import TrialSpec
    >>> spec = TrialSpec.from_dict(PK_EXAMPLE)
    >>> np.bincount(randomise(spec, 0, 8)).tolist()
    [4, 4]
    """
    weights = np.asarray(spec.weights, float) / sum(spec.weights)
    if spec.method == "simple":
        u = uniforms(spec.seed, "randomise", start, stop, 1)[:, 0]
        return np.minimum(np.searchsorted(np.cumsum(weights), u, side="right"), len(weights) - 1)
    b = int(spec.block_size)
    first, last = (start // b) * b, -(-stop // b) * b
    u = uniforms(spec.seed, "randomise", first, last, 1)[:, 0].reshape(-1, b)
    labels = np.repeat(np.arange(len(weights)), np.round(weights * b).astype(int))
    arms = labels[np.argsort(np.argsort(u, axis=1), axis=1)].reshape(-1)
    return arms[start - first: stop - first]


@functools.lru_cache(maxsize=8)
def _parsed(key: str):
    import json

    from medtwin.trials.spec import TrialSpec

    return TrialSpec.from_dict(json.loads(key))


def trial_chunk(spec_json: str, start: int, stop: int) -> dict:
    """Rows of patients ``[start, stop)`` of the trial whose spec is ``spec_json`` (JSON text: picklable).

    Returns name -> 1-D array: ``patient``, ``arm`` (index), ``tries`` (candidates drawn), the baseline
    covariates, the scenario's endpoints and ``status`` ("ok", "ineligible" or "failed: ...").
    """
    spec = _parsed(spec_json)
    cohort = sample_cohort(spec.cohort, start, stop, seed=spec.seed)
    n = stop - start
    ids = np.arange(start, stop)
    arm = randomise(spec, start, stop)
    truth = spec_truth(spec)
    try:
        theta = draw_theta(truth, cohort.covariates, seed=spec.seed, start=start, stop=stop)
    except DataError as exc:  # a covariate outside the truth model's range: every patient of the chunk fails
        theta, failed = None, f"failed: {exc}"[:160]
    columns = {name: np.full(n, np.nan) for name in scenario_endpoints(spec.scenario)}
    status = np.array(["ok"] * n, dtype=object)
    status[~cohort.eligible] = "ineligible"
    if theta is None:
        status[cohort.eligible] = failed
    for k, a in enumerate(spec.arms):
        rows = np.flatnonzero((arm == k) & cohort.eligible & (status == "ok"))
        if rows.size == 0:
            continue
        out, st = run_arm(spec, a, {c: v[rows] for c, v in cohort.covariates.items()},
                          {p: v[rows] for p, v in theta.items()}, ids[rows], spec.seed)
        for name, values in out.items():
            columns[name][rows] = values
        status[rows] = st
    table = {"patient": ids, "arm": arm.astype(np.int64), "tries": cohort.tries}
    table.update({c: np.asarray(cohort.covariates[c], float) for c in BASELINE_COLUMNS})
    table.update({c: np.asarray(cohort.covariates[c], float) for c in spec.cohort.fixed})
    table.update(columns)
    table["status"] = status.astype(str)
    return table


@dataclass(frozen=True, eq=False)
class TrialResult:
    """A finished trial: its spec and the per-patient table (one row per patient, endpoints only)."""

    spec: object
    table: object

    @property
    def analysed(self):
        """Rows with status "ok" (ineligible and failed patients are excluded and counted)."""
        return self.table[self.table["status"] == "ok"]

    @property
    def acceptance_rate(self) -> float:
        """Eligible patients / candidates drawn by the inclusion criteria."""
        return float((self.table["status"] != "ineligible").sum() / max(1, self.table["tries"].sum()))

    def status_counts(self) -> dict:
        return {str(k): int(v) for k, v in self.table["status"].value_counts().items()}

    def provenance_content(self) -> dict:
        """What a run record digests: the whole table (content) and each numeric column (outputs)."""
        numeric = {c: self.table[c].to_numpy() for c in self.table.columns if c != "status"}
        return {"content": {"columns": list(self.table.columns), "numeric": numeric,
                            "status": self.table["status"].tolist()},
                "outputs": numeric, "solver": {"executor": "medtwin.trials.execution.map_patients",
                                               "scenario": self.spec.scenario}}


def run_trial(spec, *, scheduler=None, progress=None) -> TrialResult:
    """Run every patient of ``spec`` (a :class:`~medtwin.trials.spec.TrialSpec`) in chunks; see the module doc.

    ``scheduler``: None (in-process) or what :func:`medtwin.trials.execution.map_patients` accepts;
    ``progress(done_patients, total)``.
    """
    import json

    import pandas as pd

    from medtwin.trials.execution import map_patients

    check_arms(spec)
    spec_json = json.dumps(spec.data, sort_keys=True)
    parts = [chunk for _, _, chunk in map_patients(functools.partial(trial_chunk, spec_json), spec.patients,
                                                   chunk_size=spec.chunk_size, scheduler=scheduler,
                                                   progress=progress)]
    table = pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    table.insert(2, "arm_name", np.array([spec.arms[i].name for i in table["arm"]], dtype=object))
    return TrialResult(spec, table)


def stratum_labels(values, edges) -> np.ndarray:
    """Band label "[a, b)" (the last band closed) of each value; "" outside the edges."""
    values = np.asarray(values, float)
    out = np.full(values.shape, "", dtype=object)
    for k, (a, b) in enumerate(zip(edges, edges[1:])):
        last = k == len(edges) - 2
        inside = (values >= a) & ((values <= b) if last else (values < b))
        out[inside] = f"[{a:g}, {b:g}{']' if last else ')'}"
    return out

