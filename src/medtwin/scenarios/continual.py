"""Synthetic streams with a known regime switch, and the continual-adaptation comparison.

:class:`IvOralSwitch` — an IV-to-oral step-down, the everyday ICU-to-ward move.
One model for both routes, ``pk1_oral`` (IV doses into CENTRAL, CMT 2; oral
doses into DEPOT, CMT 1, with bioavailability F1 and absorption rate KA).  The
population has log-normal IIV on KA, CL, V and F1 (typical F1 = 0.3 and
ω_F1 = 0.09 keep F1 < 1 beyond 4 sd, since the log-normal prior of
:func:`personalize` does not know F1's upper bound).

* Regime A (ICU, 0–48 h): 1-h IV infusions q8h of 500 / 1000 / 750 mg; a
  peak (+1.5 h) and a trough (+7.5 h) per interval: identifies CL and V.
* Regime B (ward, 48–144 h): 1000 mg orally q12h; levels at +2 h and +11.5 h:
  identifies only CL/F1, V/F1 and KA.  CL and F1 are not separable from B
  alone, so a twin that forgets A loses CL and V (it splits the CL/F1 ratio
  between CL and F1 by their prior variances), while B's KA and F1 are new to
  a twin that learned only A — the oral levels are mispredicted at the
  switch and the regime detector fires.

The true patient has CL at +1.5 population sd (far from typical, so
shrinkage toward the population is costly) and the other η drawn from Ω
(truncated at ±2 sd).  By default the patient's parameters do not change at
the switch: what changes is what the data can identify, which is what makes
forgetting harmful — and since the twin knows the route changed, its wide
predictive band for the first oral levels (KA, F1 still at the population)
rightly raises no alarm.  ``cl_change`` adds an unmodelled change at the
ward transfer (e.g. 0.6: augmented renal clearance resolves, CL × 0.6), the
case the regime detector is for; regime-B levels are then simulated with
the new CL over the whole history (the IV residue at the first oral levels
is small; the model has no time-varying parameters), and the held-out
regime-A test keeps the ICU CL.  Observations: the population's combined
residual error.

:func:`evaluate_continual` runs every strategy over the same seeded patients
and returns one row per (patient, strategy):

``rmse_A_before`` / ``rmse_A_after``
    Held-out regime-A-type predictions (a fresh 1000 mg 1-h IV infusion, levels
    at 1.5, 3, 6, 9, 12 h): RMS of log(plug-in prediction / true
    concentration) ×100 (≈ % error), right after regime A and at the end.
``bwt_rmse`` = after − before (> 0: forgetting of the old regime).
``mlpd_A_before`` / ``mlpd_A_after``
    Mean log predictive density of noisy held-out levels (Gaussian predictive).
``settle_obs``
    Adaptation speed: the number of post-switch observations assimilated
    before every later one-step-ahead plug-in prediction is within ``tol``
    (default 20 %) of the true concentration.
``post_rmse``
    One-step-ahead log-RMS error ×100 over all regime-B observations.
``detected``, ``delay_obs``, ``false_alarms``
    Alarm after the switch, observations from the switch to it, alarms before it.

:func:`summarize` gives the mean per strategy and the paired comparison of
Forgetting against each other strategy (Wilcoxon signed-rank test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medtwin.twin.adaptation import (AdaptationState, Consolidation, Cusum, Forgetting, Rehearsal, adapt,
                                           predictive)
from medtwin.core.events import DoseEvent, Regimen
from medtwin.core.observation import ResidualError
from medtwin.core.population import Population, Theta
from medtwin.errors import DataError
from medtwin.core.data import PatientData
from medtwin.models import get_model

__all__ = ["IvOralSwitch", "Stream", "run_stream", "evaluate_continual", "summarize", "default_strategies"]


@dataclass(frozen=True)
class Stream:
    """A synthetic stream: batches of PatientData, true concentrations per batch, the switch time (h)."""

    batches: tuple
    truth: tuple
    switch: float
    n_before: int


@dataclass(frozen=True)
class IvOralSwitch:
    """The IV-to-oral switch scenario (module docstring).  Times in h, doses in mg."""

    switch: float = 48.0
    end: float = 144.0
    iv_interval: float = 8.0
    iv_doses: tuple = (500.0, 1000.0, 750.0)
    oral_interval: float = 12.0
    oral_dose: float = 1000.0
    cl_sd: float = 1.5
    cl_change: float = 1.0
    intervals_per_batch: int = 1
    omega: tuple = (0.25, 0.16, 0.09, 0.09)
    heldout_times: tuple = (1.5, 3.0, 6.0, 9.0, 12.0)

    def population(self) -> Population:
        """Typical KA 1 /h, CL 5 L/h, V 50 L, F1 0.3; diagonal Ω on (KA, CL, V, F1); 0.05 mg/L + 10 %."""
        return Population(
            name="ivoral_switch_demo", model="pk1_oral",
            thetas=(Theta("TVKA", 1.0, "1/h", lower=0.0), Theta("TVCL", 5.0, "L/h", lower=0.0),
                    Theta("TVV", 50.0, "L", lower=0.0), Theta("TVF1", 0.3, "1", lower=0.0, upper=1.0)),
            typical={"KA": "TVKA", "CL": "TVCL", "V": "TVV", "F1": "TVF1"},
            iiv=("KA", "CL", "V", "F1"), omega=np.diag(self.omega),
            residual=ResidualError("combined", additive=0.05, proportional=0.1),
            description="synthetic IV-to-oral step-down scenario (medtwin.scenarios.continual)")

    def true_parameters(self, rng: np.random.Generator) -> dict:
        """One patient: η ~ N(0, Ω) truncated at ±2 sd, with η_CL = ``cl_sd`` sd."""
        sd = np.sqrt(np.asarray(self.omega))
        eta = np.clip(rng.standard_normal(sd.size), -2.0, 2.0) * sd
        eta[1] = self.cl_sd * sd[1]
        return {k: float(v) for k, v in self.population().individual_parameters({}, eta).items()}

    def regimen(self) -> Regimen:
        """Every dose of the stream: IV (CMT 2) before the switch, oral (CMT 1) after it."""
        n_iv = int(round(self.switch / self.iv_interval))
        iv = [DoseEvent(time=i * self.iv_interval, amount=a, cmt=2, rate=a)
              for i, a in zip(range(n_iv), np.resize(self.iv_doses, n_iv))]
        n_oral = int(round((self.end - self.switch) / self.oral_interval))
        oral = [DoseEvent(time=self.switch + i * self.oral_interval, amount=self.oral_dose, cmt=1)
                for i in range(n_oral)]
        return Regimen(tuple(iv + oral))

    def _intervals(self):
        n_iv = int(round(self.switch / self.iv_interval))
        n_oral = int(round((self.end - self.switch) / self.oral_interval))
        a = [np.array([i * self.iv_interval + 1.5, (i + 1) * self.iv_interval - 0.5]) for i in range(n_iv)]
        b = [np.array([self.switch + i * self.oral_interval + 2.0, self.switch + (i + 1) * self.oral_interval - 0.5])
             for i in range(n_oral)]
        return a, b

    def stream(self, truth: dict, rng: np.random.Generator) -> tuple[tuple, Stream]:
        """(batches, Stream) for the true parameters ``truth``; noise from ``rng``."""
        from medtwin.core.simulate import simulate

        model, regimen, err = get_model("pk1_oral"), self.regimen(), self.population().residual
        a, b = self._intervals()
        k = max(1, int(self.intervals_per_batch))
        groups = [np.concatenate(a[i:i + k]) for i in range(0, len(a), k)]
        n_before = len(groups)
        groups += [np.concatenate(b[i:i + k]) for i in range(0, len(b), k)]
        batches, true = [], []
        after = {**truth, "CL": truth["CL"] * self.cl_change}
        for i, times in enumerate(groups):
            theta = truth if i < n_before else after
            f = np.asarray(simulate(model, theta, regimen, times, keep_states=False).output("C")).reshape(-1)
            y = f + np.sqrt(err.variance(f)) * rng.standard_normal(f.size)
            batches.append(PatientData(regimen, times, y, {}))
            true.append(f)
        stream = Stream(tuple(batches), tuple(true), float(self.switch), n_before)
        return stream.batches, stream

    def heldout(self, truth: dict, rng: np.random.Generator):
        """Regime-A-type test: (regimen, times, true concentrations, noisy levels) of a fresh IV infusion."""
        from medtwin.core.simulate import simulate

        regimen = Regimen((DoseEvent(time=0.0, amount=1000.0, cmt=2, rate=1000.0),))
        times = np.asarray(self.heldout_times)
        f = np.asarray(simulate(get_model("pk1_oral"), truth, regimen, times, keep_states=False).output("C")).ravel()
        y = f + np.sqrt(self.population().residual.variance(f)) * rng.standard_normal(f.size)
        return regimen, times, f, y


def default_strategies(memory: int = 8) -> tuple:
    """Consolidation (information half-life 96 h), Rehearsal and Forgetting with the same data budget."""
    return (Consolidation(half_life=96.0), Rehearsal(memory_size=memory), Forgetting(window=memory))


def _heldout_metrics(state: AdaptationState, population, model, test) -> tuple[float, float]:
    from scipy.stats import norm

    regimen, times, f, y = test
    base = population.prior_for({})
    post = state.posterior
    mean, cov = (base.log_mean, base.covariance) if post is None else (post.mean, post.covariance)
    mu, mode, sd = predictive(model, base, mean, cov, regimen, times)
    rmse = 100.0 * math.sqrt(float(np.mean(np.log(mode / f) ** 2)))
    return rmse, float(np.mean(norm.logpdf(y, mu, sd)))


def run_stream(strategy, stream: Stream, population, test, *, detector=Cusum(), model=None) -> dict:
    """Run one strategy over a stream; the metrics of the module docstring as a dict."""
    model = model if model is not None else get_model(population.model)
    state = AdaptationState()
    before = None
    for i, batch in enumerate(stream.batches):
        state = adapt(strategy, state, batch, population, model, detector=detector)
        if i == stream.n_before - 1:
            before = _heldout_metrics(state, population, model, test)
    after = _heldout_metrics(state, population, model, test)
    truth = np.concatenate(stream.truth)
    inn = state.innovations
    post = [k for k, i in enumerate(inn) if i.time >= stream.switch]
    err = np.array([abs(math.log(inn[k].mode / truth[k])) for k in post])
    bad = np.flatnonzero(err >= 0.2)
    alarms_after = [j for j, k in enumerate(post) if inn[k].alarm]
    return {"rmse_A_before": before[0], "rmse_A_after": after[0], "bwt_rmse": after[0] - before[0],
            "mlpd_A_before": before[1], "mlpd_A_after": after[1], "bwt_mlpd": after[1] - before[1],
            "settle_obs": int(bad[-1] + 1) if bad.size else 0,
            "post_rmse": 100.0 * math.sqrt(float(np.mean(err ** 2))),
            "detected": bool(alarms_after), "delay_obs": alarms_after[0] + 1 if alarms_after else np.nan,
            "false_alarms": sum(1 for i in inn if i.alarm and i.time < stream.switch),
            "failures": state.failures}


def evaluate_continual(strategies=None, *, n_patients: int = 20, seed: int = 0, scenario: IvOralSwitch | None = None,
                       detector: Cusum | None = Cusum(), progress=None):
    """Compare strategies on seeded synthetic patients of ``scenario``: one DataFrame row per (patient, strategy).

    Examples
    --------
    >>> frame = evaluate_continual(n_patients=1)  # doctest: +SKIP
    >>> sorted(frame.strategy.unique())  # doctest: +SKIP
    ['consolidation', 'forgetting', 'rehearsal']
    """
    import pandas as pd

    if n_patients < 1:
        raise DataError(f"evaluate_continual: n_patients must be >= 1, got {n_patients}")
    scenario = scenario or IvOralSwitch()
    strategies = tuple(strategies) if strategies is not None else default_strategies()
    population, model = scenario.population(), get_model("pk1_oral")
    rows = []
    for p in range(n_patients):
        rng = np.random.default_rng([seed, p])
        truth = scenario.true_parameters(rng)
        _, stream = scenario.stream(truth, rng)
        test = scenario.heldout(truth, rng)
        for s in strategies:
            rows.append({"patient": p, "strategy": s.name, **run_stream(s, stream, population, test,
                                                                        detector=detector, model=model)})
        if progress is not None:
            progress(p + 1, n_patients)
    return pd.DataFrame(rows)


def summarize(frame, baseline: str = "forgetting"):
    """(mean per strategy, paired comparison of ``baseline`` against each other strategy).

    The paired table has, per other strategy and metric (``rmse_A_after``,
    ``bwt_rmse``, ``settle_obs``, ``post_rmse``): the mean per-patient
    difference baseline − other, the fraction of patients where the baseline
    is worse (larger), and the two-sided Wilcoxon signed-rank p-value.
    """
    import pandas as pd
    from scipy.stats import wilcoxon

    metrics = ["rmse_A_before", "rmse_A_after", "bwt_rmse", "mlpd_A_after", "bwt_mlpd", "settle_obs", "post_rmse",
               "detected", "delay_obs", "false_alarms", "failures"]
    means = frame.groupby("strategy", sort=False)[metrics].mean()
    wide = frame.pivot(index="patient", columns="strategy")
    rows = []
    for other in [s for s in frame.strategy.unique() if s != baseline]:
        for m in ("rmse_A_after", "bwt_rmse", "settle_obs", "post_rmse"):
            d = (wide[(m, baseline)] - wide[(m, other)]).to_numpy(dtype=float)
            p = float(wilcoxon(d).pvalue) if np.any(d != 0) and d.size > 1 else 1.0
            rows.append({"baseline": baseline, "other": other, "metric": m, "mean_diff": float(np.mean(d)),
                         "frac_baseline_worse": float(np.mean(d > 0)), "wilcoxon_p": p})
    return means, pd.DataFrame(rows)
