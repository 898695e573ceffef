"""Model averaging over candidate priors: weights against independent references, the mixture band, the
shipped vancomycin priors against their papers' equations, and the refusals."""

import math

import numpy as np
import pytest

from medtwin.core.data import PatientData
from medtwin.core.events import Regimen
from medtwin.core.observation import ResidualError
from medtwin.core.population import CovariateEffect, IndividualPrior, Population, Theta
from medtwin.errors import DataError, ModelError, PopulationError
from medtwin.infer.model_averaging import (ModelAveragedPosterior, allocate, check_candidates, model_weights,
                                           personalize_averaged)
from medtwin.infer.posterior import Posterior
from medtwin.io.population_file import drug_population_paths, drug_populations, load_population
from medtwin.models import get_model

DOSE = 1000.0  # mg, IV bolus at t = 0


def _pk1_population(name, cl, v, omega, residual, drug="testdrug"):
    return Population(name=name, model="pk1_iv", drug=drug,
                      thetas=(Theta("TVCL", cl, "L/h", lower=0.0), Theta("TVV", v, "L", lower=0.0)),
                      typical={"CL": "TVCL", "V": "TVV"}, iiv=("CL", "V"), omega=omega, residual=residual)


def _bolus_conc(cl, v, t):
    """1-compartment IV bolus, written here from the closed form C(t) = D/V · exp(−CL/V · t)."""
    cl, v = np.atleast_1d(cl), np.atleast_1d(v)
    return (DOSE / v)[:, None] * np.exp(-np.multiply.outer(cl / v, t))


# ----------------------------------------------------------------------------------------------- weights
def test_laplace_evidence_and_map_objective_match_brute_force_integration():
    """log p(y | M) by a 2-D quadrature over z = log(CL, V) of N(z; μ, Ω) · Π N(y_j; f_j(z), σ_j²), with the
    model's concentration written independently; the MAP objective recomputed from the closed form."""
    omega = np.array([[0.09, 0.02], [0.02, 0.04]])
    residual = ResidualError("combined", additive=0.3, proportional=0.1)
    pop = _pk1_population("brute", 4.0, 30.0, omega, residual)
    times = np.array([1.0, 4.0, 9.0])
    y = np.array([29.0, 18.5, 7.6])
    data = PatientData(Regimen.single(DOSE), times, y, {})
    other = _pk1_population("other", 2.5, 40.0, omega, residual)
    mix = personalize_averaged([pop, other], data, weighting="laplace")
    post, diag = mix.components[0], mix.model_diagnostics[0]

    mu = np.log([4.0, 30.0])
    prec = np.linalg.inv(omega)
    sd = np.sqrt(np.diag(post.covariance))
    grid = [np.linspace(m - 9 * s, m + 9 * s, 401) for m, s in zip(post.mean, sd)]
    z1, z2 = np.meshgrid(*grid, indexing="ij")
    z = np.stack([z1.ravel(), z2.ravel()], axis=1)
    f = _bolus_conc(np.exp(z[:, 0]), np.exp(z[:, 1]), times)
    var = 0.3**2 + (0.1 * f) ** 2
    loglik = np.sum(-0.5 * np.log(2 * np.pi * var) - 0.5 * (y - f) ** 2 / var, axis=1)
    r = z - mu
    logprior = (-0.5 * np.einsum("ni,ij,nj->n", r, prec, r) - np.log(2 * np.pi)
                - 0.5 * np.linalg.slogdet(omega)[1])
    dens = np.exp(loglik + logprior).reshape(z1.shape)
    evidence = np.trapezoid(np.trapezoid(dens, grid[1], axis=1), grid[0])
    assert diag["log_evidence"] == pytest.approx(math.log(evidence), abs=0.02)

    f_map = _bolus_conc(np.exp(post.mean[:1]), np.exp(post.mean[1:]), times)[0]
    var_map = 0.3**2 + (0.1 * f_map) ** 2
    rm = post.mean - mu
    ofv = (np.sum(np.log(2 * np.pi * var_map) + (y - f_map) ** 2 / var_map) + rm @ prec @ rm)
    assert diag["ofv"] == pytest.approx(ofv, rel=1e-7)
    assert diag["log_likelihood"] == pytest.approx(-0.5 * np.sum(np.log(2 * np.pi * var_map)
                                                                 + (y - f_map) ** 2 / var_map), rel=1e-7)
    # the weights are the normalised exp(scores), whichever weighting
    for weighting, key in (("map", lambda d: -0.5 * d["ofv"]), ("likelihood", lambda d: d["log_likelihood"]),
                           ("laplace", lambda d: d["log_evidence"]), ("aic", lambda d: -0.5 * d["ofv"] - 2)):
        w = personalize_averaged([pop, other], data, weighting=weighting).weights
        s = np.array([key(d) for d in mix.model_diagnostics])
        assert w == pytest.approx(np.exp(s - s.max()) / np.exp(s - s.max()).sum(), rel=1e-9)


def test_model_weights_and_allocation():
    assert model_weights([math.log(1.0), math.log(3.0)]).tolist() == pytest.approx([0.25, 0.75])
    assert model_weights([-1e6, 0.0]).tolist() == [0.0, 1.0]   # no overflow
    assert model_weights([0.0, 2.0, 2.0], mode="select").tolist() == [0.0, 1.0, 0.0]
    assert allocate([0.3, 0.7], 1000).tolist() == [300, 700]
    assert allocate([1 / 3] * 3, 10).tolist() == [4, 3, 3]
    assert allocate([0.05, 0.95], 10).sum() == 10
    with pytest.raises(DataError, match="mode"):
        model_weights([0.0], mode="vote")
    with pytest.raises(DataError, match="finite score"):
        model_weights([float("nan"), -math.inf])


# ----------------------------------------------------------------------------------------------- mixture band
def _posterior(cl, v, sd):
    z = np.log([cl, v])
    cov = np.eye(2) * sd**2
    prior = IndividualPrior("pk1_iv", ("CL", "V"), z, cov, {}, ResidualError("additive", 0.5))
    return Posterior(get_model("pk1_iv"), prior, "laplace", ("CL", "V"), z, cov, None, (), z, cov, "converged", "")


def test_mixture_band_matches_direct_weighted_sampling():
    a, b = _posterior(2.0, 10.0, 0.2), _posterior(5.0, 25.0, 0.3)
    mix = ModelAveragedPosterior((a, b), ("a", "b"), [0.3, 0.7], "laplace", "average", [0.0, 0.0])
    times = np.array([0.5, 2.0, 6.0])
    n = 4000
    band = mix.predict(Regimen.single(DOSE), times, n_draws=n, seed=3)
    # the band is component a's 1,200 draws then b's 2,800 (deterministic allocation)
    assert band.draws["C"].shape == (n, 3)
    np.testing.assert_array_equal(band.draws["C"][:1200], a.predict(Regimen.single(DOSE), times, n_draws=1200,
                                                                     seed=3).draws["C"])
    # ... and has the mixture's distribution: direct weighted sampling with the closed-form concentration
    rng = np.random.default_rng(11)
    pick = rng.random(n) < 0.3
    z = np.where(pick[:, None], rng.normal(np.log([2.0, 10.0]), 0.2, (n, 2)),
                 rng.normal(np.log([5.0, 25.0]), 0.3, (n, 2)))
    direct = _bolus_conc(np.exp(z[:, 0]), np.exp(z[:, 1]), times)
    for k in range(times.size):
        q_band = np.quantile(band.draws["C"][:, k], [0.1, 0.25, 0.5, 0.75, 0.9])
        q_direct = np.quantile(direct[:, k], [0.1, 0.25, 0.5, 0.75, 0.9])
        assert q_band == pytest.approx(q_direct, rel=0.06)
    p_band = np.mean(band.draws["C"][:, 1] > 40.0)
    assert p_band == pytest.approx(np.mean(direct[:, 1] > 40.0), abs=0.03)


def test_recommend_dose_scores_each_component_with_its_own_model():
    """A 1- and a 2-compartment component: the pooled P(target) is the weighted mean of each alone."""
    from medtwin.control.dosing import recommend_dose
    from medtwin.control.targets import AUC24Window

    one = _posterior(2.0, 10.0, 0.15)
    z2 = np.log([8.0, 30.0, 5.0, 40.0])
    cov2 = np.eye(4) * 0.15**2
    prior2 = IndividualPrior("pk2_iv", ("CL", "V1", "Q", "V2"), z2, cov2, {}, ResidualError("additive", 0.5))
    two = Posterior(get_model("pk2_iv"), prior2, "laplace", prior2.parameters, z2, cov2, None, (), z2, cov2,
                    "converged", "")
    mix = ModelAveragedPosterior((one, two), ("one", "two"), [0.5, 0.5], "laplace", "average", [0.0, 0.0])
    target = AUC24Window(400.0, 600.0)
    kw = dict(n_draws=200, seed=5, sensitivity=False)
    rec = recommend_dose(mix, target, **kw)
    # score the same regimen under each component alone, on the same draws (seeds 5 and 7, 100 draws each)
    alone = [recommend_dose(p, target, **{**kw, "n_draws": 100, "seed": s}) for p, s in ((one, 5), (two, 7))]
    regimen = rec.regimen
    window = rec.target["window_h"]
    p_each = []
    for post, seed in ((one, 5), (two, 7)):
        band = post.predict(regimen, np.arange(window[0], window[1] + 1e-9, 0.05), n_draws=100, seed=seed)
        p_each.append(np.mean((band.auc("C", *window) >= 400) & (band.auc("C", *window) <= 600)))
    assert rec.probabilities["target"] == pytest.approx(np.mean(p_each), abs=0.02)
    assert rec.predicted.draws["C"].shape[0] == 200
    assert {a.action["daily_mg"] for a in alone} != {None}
    with pytest.raises(ModelError, match="digests differ"):  # model= must be the mixture's (top) model
        recommend_dose(mix, target, model=get_model("pk2_iv"), **kw)


# ----------------------------------------------------------------------------------------------- shipped priors
def test_shipped_vancomycin_priors_match_their_papers():
    pops = {p.name: p for p in drug_populations("vancomycin")}
    assert set(pops) >= {"vancomycin_goti2018", "vancomycin_thomson2009", "vancomycin_buelga2005"}
    crcl, wt = 80.0, 85.0
    cov = {"CRCL": crcl, "WT": wt, "DIAL": 0.0}
    thomson = pops["vancomycin_thomson2009"].typical_parameters(cov)  # Thomson 2009 Table 2
    assert float(thomson["CL"]) == pytest.approx(2.99 * (1 + 0.0154 * (crcl - 66.0)), rel=1e-12)
    assert float(thomson["V1"]) == pytest.approx(0.675 * wt, rel=1e-12)
    assert float(thomson["Q"]) == pytest.approx(2.28, rel=1e-12)
    assert float(thomson["V2"]) == pytest.approx(0.732 * wt, rel=1e-12)
    buelga = pops["vancomycin_buelga2005"].typical_parameters(cov)  # Buelga 2005: CrCl in L/h
    assert float(buelga["CL"]) == pytest.approx(1.08 * crcl * 60.0 / 1000.0, rel=1e-12)
    assert float(buelga["V"]) == pytest.approx(0.98 * wt, rel=1e-12)
    omega = np.asarray(pops["vancomycin_buelga2005"].omega)
    assert np.diag(omega) == pytest.approx([math.log(0.2816**2 + 1), math.log(0.3715**2 + 1)], rel=1e-9)
    goti = pops["vancomycin_goti2018"].typical_parameters(cov)  # Goti 2018 Table 2
    assert float(goti["CL"]) == pytest.approx(4.5 * (crcl / 120.0) ** 0.8, rel=1e-12)
    for p in pops.values():
        assert p.drug == "vancomycin" and "doi:" in p.citation
        assert get_model(p.model).output_names[0] == p.residual.output


def test_model_averaging_picks_the_generating_model():
    """Eight levels simulated from each candidate's typical patient with that candidate's own residual error
    (4 noise draws, folded at 0): averaged over the draws, the generating model has the largest weight."""
    from medtwin.core.simulate import simulate

    pops = drug_populations("vancomycin")
    cov = {"CRCL": 70.0, "WT": 70.0, "DIAL": 0.0}
    regimen = Regimen.every(12.0, "h", 1000.0, "mg", n=2, duration=1.0)
    times = np.array([1.25, 2.0, 4.0, 8.0, 11.5, 13.25, 16.0, 23.5])
    for k, p in enumerate(pops):
        theta = {n: np.array([float(v)]) for n, v in p.typical_parameters(cov).items()}
        f = np.asarray(simulate(get_model(p.model), theta, regimen, times).output("C"), float).ravel()
        weights = []
        for seed in range(4):
            y = np.abs(f + np.sqrt(p.residual.variance(f)) * np.random.default_rng(seed).standard_normal(f.size))
            weights.append(personalize_averaged(pops, PatientData(regimen, times, y, cov)).weights)
        mean = np.mean(weights, axis=0)
        assert int(np.argmax(mean)) == k, (p.name, mean)


# ----------------------------------------------------------------------------------------------- refusals
def test_bad_candidate_sets_name_the_file_and_field(tmp_path):
    residual = ResidualError("additive", 0.5)
    a = _pk1_population("a", 2.0, 10.0, np.eye(2) * 0.1, residual, drug="vancomycin")
    b = _pk1_population("b", 2.0, 10.0, np.eye(2) * 0.1, residual, drug="gentamicin")
    with pytest.raises(PopulationError, match=r"b\.yaml: drug: 'gentamicin'"):
        check_candidates([a, b], ["a.yaml", "b.yaml"])
    c = _pk1_population("c", 2.0, 10.0, np.eye(2) * 0.1, ResidualError("additive", 0.5, output="CP"),
                        drug="vancomycin")
    with pytest.raises(PopulationError, match=r"c\.yaml: residual\.output: 'CP'"):
        check_candidates([a, c], ["a.yaml", "c.yaml"])
    d = _pk1_population("d", 2.0, 10.0, np.eye(2) * 0.1, ResidualError("additive", 0.5, unit="ug/mL"),
                        drug="vancomycin")
    with pytest.raises(PopulationError, match=r"d\.yaml: residual\.unit"):
        check_candidates([a, d], ["a.yaml", "d.yaml"])
    with pytest.raises(DataError, match="at least two"):
        check_candidates([a])
    with pytest.raises(DataError, match=r"no shipped population file declares drug 'vancomycine'.*vancomycin \("):
        drug_population_paths("vancomycine")
    with pytest.raises(PopulationError, match="drug: must be a name"):
        _pk1_population("e", 2.0, 10.0, np.eye(2) * 0.1, residual, drug="vanco mycin")
    with pytest.raises(DataError, match="weighting"):
        personalize_averaged([a, a], PatientData(Regimen.single(DOSE), [1.0], [5.0], {}), weighting="bic")
    # a missing covariate is refused naming the candidate
    pops = drug_populations("vancomycin")
    data = PatientData(Regimen.single(DOSE, rate=DOSE), [2.0], [20.0], {"CRCL": 60.0, "WT": 70.0})
    with pytest.raises(DataError, match=r"DIAL.*vancomycin_goti2018"):
        personalize_averaged(pops, data)
    assert load_population(drug_population_paths("vancomycin")[0]).drug == "vancomycin"
    assert CovariateEffect("CL", "CRCL", "linear", 0.0154, reference=66.0).factor(80.0, 0.0154) == \
        pytest.approx(1 + 0.0154 * 14)


def test_a_priori_mixture_sequential_update_and_twin():
    """Before any level: equal weights; updating level by level chains the Laplace evidence (close to the
    batch weights); a Twin on the mixture recommends through DoseOptimizer."""
    from medtwin.control.dosing import DoseConstraints
    from medtwin.control.policy import DoseOptimizer
    from medtwin.control.targets import AUC24Window
    from medtwin.twin import Twin

    pops = drug_populations("vancomycin")
    cov = {"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0}
    prior = ModelAveragedPosterior.from_priors(pops, cov)
    assert prior.weights.tolist() == pytest.approx([1 / 3] * 3) and prior.ok
    regimen = Regimen.every(12.0, "h", 1000.0, "mg", n=4, duration=1.0)
    seq = prior.update(PatientData(regimen, [11.5], [9.0], cov)).update(PatientData(regimen, [35.5], [12.5], cov))
    batch = personalize_averaged(pops, PatientData(regimen, [11.5, 35.5], [9.0, 12.5], cov))
    assert seq.weights == pytest.approx(batch.weights, abs=0.03)
    twin = Twin.from_posterior(seq)
    rec = twin.recommend(DoseOptimizer(AUC24Window(400.0, 600.0), DoseConstraints(), n_draws=100,
                                       sensitivity=False))
    assert rec.action["dose_mg"] > 0 and rec.predicted.draws["C"].shape[0] == 100
