"""In-silico trials: randomisation, chunk independence, closed-form ATE, stratum refusal, CATE, forest plot."""

import numpy as np
import pandas as pd
import pytest

from medtwin.errors import DataError, PostRandomisationError
from medtwin.trials.analysis import ate, cate, forest_plot, stratum_effects
from medtwin.trials.engine import PK_EXAMPLE, TrialResult, randomise, run_trial
from medtwin.trials.spec import TrialSpec


@pytest.fixture(scope="module")
def pk_trial():
    return run_trial(TrialSpec.from_dict({**PK_EXAMPLE, "patients": 400}))


def test_block_and_simple_randomisation_are_balanced_and_chunk_independent():
    spec = TrialSpec.from_dict({**PK_EXAMPLE, "randomisation": {"weights": [2, 1], "method": "block",
                                                                "block_size": 6}})
    arms = randomise(spec, 0, 600)
    assert all(np.bincount(block, minlength=2).tolist() == [4, 2] for block in arms.reshape(-1, 6))
    assert np.array_equal(np.concatenate([randomise(spec, 0, 5), randomise(spec, 5, 13), randomise(spec, 13, 600)]),
                          arms)
    simple = TrialSpec.from_dict({**PK_EXAMPLE, "randomisation": {"weights": [1, 3], "method": "simple"}})
    share = randomise(simple, 0, 4000).mean()
    assert abs(share - 0.75) < 4 * np.sqrt(0.75 * 0.25 / 4000)
    with pytest.raises(DataError, match="block_size"):
        TrialSpec.from_dict({**PK_EXAMPLE, "randomisation": {"weights": [2, 1], "block_size": 4}})


def test_per_patient_results_do_not_depend_on_the_chunk_size():
    spec = TrialSpec.from_dict({**PK_EXAMPLE, "patients": 30, "cohort": {"inclusion": {"CRCL": [30, 120]}}})
    a = run_trial(spec.with_chunk_size(7)).table
    b = run_trial(spec.with_chunk_size(30)).table
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert set(a["status"]) == {"ok"} and np.all((a["CRCL"] >= 30) & (a["CRCL"] <= 120))


def test_ate_of_two_doses_matches_the_closed_form(pk_trial):
    # one compartment, IV bolus: AUC = dose / CL per patient; CL = 5 exp(η), η ~ N(0, 0.09), so
    # E[AUC_high − AUC_low] = (1500 − 1000) · E[1/CL] = 500 · exp(0.09 / 2) / 5
    table = pk_trial.analysed
    dose = np.where(table["arm_name"] == "high", 1500.0, 1000.0)
    per_patient_cl = dose / table["auc"].to_numpy()
    truth_cl = np.exp(np.log(5.0))  # sanity of the scale: median CL near 5 L/h
    assert np.median(per_patient_cl) == pytest.approx(truth_cl, rel=0.1)
    truth = 500.0 * np.exp(0.09 / 2) / 5.0
    r = ate(table.loc[table["arm_name"] == "high", "auc"], table.loc[table["arm_name"] == "low", "auc"],
            bootstrap=400, seed=1)
    assert r["low"] <= truth <= r["high"]
    assert abs(r["estimate"] - truth) < 3 * r["se"]
    assert r["boot_low"] == pytest.approx(r["low"], abs=0.25 * r["se"] * 2)
    assert r["boot_high"] == pytest.approx(r["high"], abs=0.25 * r["se"] * 2)


def test_binary_ate_uses_the_proportion_variance():
    r = ate(np.array([1, 1, 0, 1.0]), np.array([0, 0, 1, 0.0]), binary=True)
    assert r["estimate"] == 0.5 and r["se"] == pytest.approx(np.sqrt(0.75 * 0.25 / 4 * 2))


def test_strata_on_baseline_covariates_and_refusal_of_post_randomisation_ones(pk_trial, tmp_path):
    table = stratum_effects(pk_trial, {"CRCL": [0, 90, 1000], "WT": [35, 80, 250]}, "auc")
    assert table.loc[0, "variable"] == "overall" and len(table) == 5
    assert table["n_treated"].iloc[1:3].sum() == table.loc[0, "n_treated"]
    for post in ("auc", "cmax", "tries"):
        with pytest.raises(PostRandomisationError, match="after randomisation") as info:
            stratum_effects(pk_trial, {post: [0, 100, 1000]}, "auc")
        assert info.value.variable == post
    with pytest.raises(PostRandomisationError, match="'cmax' refused"):  # already when the spec is read
        TrialSpec.from_dict({**PK_EXAMPLE, "strata": {"CRCL": [0, 90, 1000], "cmax": [0, 20, 100]}})
    with pytest.raises(DataError, match="primary.endpoint"):
        TrialSpec.from_dict({**PK_EXAMPLE, "primary": {**PK_EXAMPLE["primary"], "endpoint": "tir"}})
    forest_plot(table, tmp_path / "forest.png", title="test")
    assert (tmp_path / "forest.png").stat().st_size > 5000


def test_cate_covers_a_known_linear_heterogeneity():
    # simulated trial with known τ(x) = 2 + 0.05 · (CRCL − 80): the DR-learner's CIs must cover the truth
    rng = np.random.default_rng(3)
    n = 1000
    crcl, age = rng.uniform(20, 150, n), rng.uniform(18, 90, n)
    arm = rng.integers(0, 2, n)
    tau = 2.0 + 0.05 * (crcl - 80.0)
    y = 0.1 * age + 0.02 * crcl + arm * tau + rng.normal(0, 1.0, n)
    frame = pd.DataFrame({"patient": np.arange(n), "arm": arm, "arm_name": np.where(arm == 1, "high", "low"),
                          "CRCL": crcl, "AGE": age, "WT": rng.uniform(50, 100, n), "auc": y, "status": "ok"})
    result = TrialResult(TrialSpec.from_dict(PK_EXAMPLE), frame)
    terms, effects = cate(result, "auc", ("CRCL", "AGE"))
    truth = {"intercept": 2.0 - 0.05 * 80.0, "CRCL": 0.05, "AGE": 0.0}
    for _, row in terms.iterrows():
        assert row["low"] <= truth[row["term"]] <= row["high"], row
    coverage = np.mean((effects["low"] <= tau) & (tau <= effects["high"]))
    assert coverage > 0.9
    with pytest.raises(PostRandomisationError):
        cate(result, "auc", ("CRCL", "auc"))


def test_a_failing_patient_is_a_status_and_the_trial_goes_on(monkeypatch):
    from medtwin.scenarios import vanco_loop
    from medtwin.trials.spec import load_trial_spec, shipped_trial_path

    real = vanco_loop.run_vanco_patient

    def flaky(patient, *args, **kwargs):
        if patient.id == 2:
            raise FloatingPointError("solver blew up")
        return real(patient, *args, **kwargs)

    monkeypatch.setattr(vanco_loop, "run_vanco_patient", flaky)
    base = load_trial_spec(shipped_trial_path("vancomycin_twin_vs_label")).data
    spec = TrialSpec.from_dict({**base, "patients": 6, "chunk_size": 3, "settings": {"days": 2},
                                "arms": [{"name": "label", "policy": "label"},
                                         {"name": "fixed", "policy": "fixed", "dose_mg": 1000.0, "interval_h": 12.0,
                                          "duration_h": 1.0}],
                                "primary": {"endpoint": "attainment", "treatment": "fixed", "control": "label"}})
    result = run_trial(spec)
    assert result.table.loc[2, "status"].startswith("failed: FloatingPointError: solver blew up")
    assert np.isnan(result.table.loc[2, "attainment"]) and result.status_counts() == {"ok": 5, "failed: "
                                                                                      "FloatingPointError: solver "
                                                                                      "blew up": 1}
    assert len(result.analysed) == 5 and np.isfinite(result.analysed["auc24_mean"]).all()
