"""medtwin.rl against independent references (simulate(), the vancomycin harness) and through a real Twin.

Slow tier: the first run compiles the reference solvers and the twin.
"""

import numpy as np
import pytest

from medtwin.rl.dynamics import GlucoseBatch

pytestmark = pytest.mark.slow


def test_glucose_batch_matches_simulate():
    """RK4 (2.5 min) over a patient axis against simulate() with adaptive Dormand-Prince, rtol 1e-10."""
    from medtwin.core.events import Regimen
    from medtwin.core.simulate import simulate
    from medtwin.scenarios.glucose_loop import GlucoseScenario, feed_regimen, insulin_event
    from medtwin.scenarios.glucose_patients import sample_icu_patients
    from medtwin.models import get_model

    patients = sample_icu_patients(2, hours=4, seed=5)
    batch = GlucoseBatch(patients, enteral_g_per_h=3.5)
    grid = np.concatenate([batch.advance(2.0, np.array([1.0, 3.0])), batch.advance(2.0, np.array([0.0, 4.0]))])
    times = np.arange(1, 49) * 5.0 / 60.0
    scenario = GlucoseScenario(hours=4)
    for j, (p, rates) in enumerate(zip(patients, [(1.0, 0.0), (3.0, 4.0)])):
        model = get_model(p.model)
        regimen = Regimen(feed_regimen(scenario).events + insulin_event(0, 2, rates[0]).events
                          + insulin_event(2, 4, rates[1]).events)
        changes = {"SI": (np.arange(4.0), p.parameters["SI"] * np.asarray(p.si_multipliers[:4]))}
        ref = simulate(model, model.parameter_table(dict(p.parameters)), regimen, times, method="dopri5",
                       rtol=1e-10, atol=1e-10, parameter_changes=changes, keep_states=False).output("G")
        np.testing.assert_allclose(grid[:, j], np.asarray(ref).reshape(-1), rtol=2e-5)


def test_vanco_env_auc_matches_harness():
    """The environment's exact daily AUC against the harness' own (simulate + trapezoid on a 6-min grid)."""
    from medtwin.core.events import Regimen
    from medtwin.rl.envs import VANCO_DOSES_MG, VancoVectorEnv
    from medtwin.scenarios.vanco_loop import daily_auc, sample_vanco_patients

    patients = sample_vanco_patients(2, seed=3)
    env = VancoVectorEnv(2, days=3, patients=patients)
    env.reset(seed=0)
    actions = [np.array([3, 5]), np.array([4, 2]), np.array([7, 0])]
    aucs = np.array([env.step(a)[4]["auc24"] for a in actions])
    for j, p in enumerate(patients):
        events = ()
        for d, a in enumerate(actions):
            dose = VANCO_DOSES_MG[a[j]]
            events += Regimen.every(12, "h", dose, "mg", n=2, duration=max(1.0, dose / 1000.0), start=24.0 * d).events
        np.testing.assert_allclose(aucs[:, j], daily_auc(p, Regimen(events), 3), rtol=2e-4)




def test_learned_policy_through_twin_recommend():
    """A learned insulin policy on the shipped ICU twin: Twin.recommend -> control.policy.propose; the
    highest-scoring rate (8 U/h) breaks the 2 U/h change limit, so the shield proposes 4 U/h from 2 U/h."""
    from medtwin.core.stream import Measurement
    from medtwin.rl.policy import insulin_policy
    from medtwin.scenarios.icu import icu_twin_spec
    from medtwin.twin.codec import twin_from_spec

    twin = twin_from_spec(icu_twin_spec())
    twin = twin.assimilate([Measurement(0.0, "G", 9.0, "mmol/L", source_id="a"),
                            Measurement(1.0, "G", 10.5, "mmol/L", source_id="b")])
    seen = []

    class Q:
        def score(self, obs):
            seen.append(obs)
            return np.arange(8.0)[None].repeat(len(obs), 0)

    r = twin.recommend(insulin_policy(Q()), current_rate=2.0, time=1.0, hours=24)
    assert r.action["apply_now_u_per_h"] == 4.0 and r.status == "feasible"
    np.testing.assert_allclose(seen[0][0], [10.5, 9.0, 2.0, 1.0 / 24])   # the twin's two latest results
