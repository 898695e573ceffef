"""Virtual cohorts: copula correlations and marginals against the specified ones, inclusion, chunk independence."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtri

from medtwin.errors import DataError
from medtwin.trials.cohort import CONTINUOUS, CohortSpec, ckd_epi_2021, draw_theta, sample_cohort

N = 20_000


@pytest.fixture(scope="module")
def cohort():
    return sample_cohort(CohortSpec(), 0, N, seed=11)


def _reference(spec, name, female):
    """The specified marginal as a scipy distribution of x (normal) or log x (log-normal), truncation included."""
    m = spec.marginals[name]
    loc, scale = m.loc[int(female)], m.scale[int(female)]
    if m.dist == "lognormal":
        loc = np.log(loc)
        low, high = np.log(m.low) if m.low > 0 else -np.inf, np.log(m.high)
    else:
        low, high = m.low, m.high
    return stats.truncnorm((low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale), m.dist == "lognormal"


def test_marginals_match_the_specified_distributions(cohort):
    spec = CohortSpec()
    female = cohort.covariates["SEX"] == 1
    # P(female) within 4 binomial SE of the specified 0.42
    assert abs(female.mean() - 0.42) < 4 * np.sqrt(0.42 * 0.58 / N)
    for name in CONTINUOUS:
        for sex in (False, True):
            dist, log = _reference(spec, name, sex)
            x = cohort.covariates[name][female == sex]
            result = stats.kstest(np.log(x) if log else x, dist.cdf)
            assert result.pvalue > 1e-3, (name, sex, result)


def test_copula_correlations_match_the_specified_matrix(cohort):
    spec = CohortSpec()
    for sex in (False, True):
        keep = cohort.covariates["SEX"] == sex
        scores = []
        for name in CONTINUOUS:
            dist, log = _reference(spec, name, sex)
            x = cohort.covariates[name][keep]
            # normal scores through the truncated marginal's CDF: the copula's latent z
            scores.append(ndtri(np.clip(dist.cdf(np.log(x) if log else x), 1e-12, 1 - 1e-12)))
        observed = np.corrcoef(scores)
        target = spec.matrix()
        se = (1 - target ** 2) / np.sqrt(keep.sum())
        assert np.all(np.abs(observed - target) < 4 * se + 1e-12), np.round(observed - target, 3)
    # not independent marginals: weight and height go together, as specified
    assert np.corrcoef(cohort.covariates["WT"], cohort.covariates["HT"])[0, 1] > 0.3


def test_derived_covariates_are_the_published_equations(cohort):
    c = cohort.covariates
    k = 5
    crcl = (140 - c["AGE"][k]) * c["WT"][k] / (72 * c["SCR"][k]) * (0.85 if c["SEX"][k] else 1.0)
    assert c["CRCL"][k] == pytest.approx(crcl)
    assert c["BMI"][k] == pytest.approx(c["WT"][k] / (c["HT"][k] / 100) ** 2)
    # CKD-EPI 2021 (Inker 2021): a 50-year-old woman with SCr 0.6 mg/dL, by hand
    assert float(ckd_epi_2021(0.6, 50, True)) == pytest.approx(142 * (0.6 / 0.7) ** -0.241 * 0.9938 ** 50 * 1.012)


def test_inclusion_by_rejection_with_the_acceptance_rate(cohort):
    bounds = {"CRCL": (20.0, 150.0), "AGE": (18.0, 90.0)}
    included = sample_cohort(CohortSpec(inclusion=bounds), 0, 4000, seed=11)
    for name, (lo, hi) in bounds.items():
        assert np.all((included.covariates[name] >= lo) & (included.covariates[name] <= hi))
    # the acceptance rate is the share of an unrestricted cohort meeting the criteria (4 binomial SE)
    c = cohort.covariates
    share = np.mean((c["CRCL"] >= 20) & (c["CRCL"] <= 150) & (c["AGE"] >= 18) & (c["AGE"] <= 90))
    assert abs(included.acceptance_rate - share) < 4 * np.sqrt(share * (1 - share) / included.tries.sum())
    assert 0.5 < share < 1.0
    impossible = sample_cohort(CohortSpec(inclusion={"AGE": (200.0, 300.0)}, max_rounds=3), 0, 5, seed=1)
    assert not impossible.eligible.any() and np.all(impossible.tries == 3)


def test_a_patient_depends_only_on_seed_and_index():
    spec = CohortSpec(inclusion={"CRCL": (20.0, 150.0)})
    whole = sample_cohort(spec, 0, 50, seed=3)
    parts = [sample_cohort(spec, a, b, seed=3) for a, b in ((0, 7), (7, 8), (8, 50))]
    for name, values in whole.covariates.items():
        assert np.array_equal(values, np.concatenate([p.covariates[name] for p in parts]))
    assert not np.array_equal(sample_cohort(spec, 0, 50, seed=4).covariates["WT"], whole.covariates["WT"])


def test_theta_draws_follow_the_population_and_are_chunk_independent():
    from medtwin.core.population import Population
    from medtwin.trials.engine import PK_EXAMPLE

    population = Population.from_dict(PK_EXAMPLE["truth"]["population"])
    n = 20_000
    theta = draw_theta(population, {}, seed=5, start=0, stop=n)
    log_cl = np.log(theta["CL"])
    assert abs(log_cl.mean() - np.log(5.0)) < 4 * 0.3 / np.sqrt(n)
    assert abs(log_cl.std() - 0.3) < 4 * 0.3 / np.sqrt(2 * n)
    part = draw_theta(population, {}, seed=5, start=100, stop=130)
    assert np.array_equal(part["V"], theta["V"][100:130])


def test_bad_cohort_specs_are_refused_naming_the_field():
    with pytest.raises(DataError, match="correlation"):
        CohortSpec(correlation={"WT,HT": 0.99, "AGE,WT": 0.99, "AGE,HT": -0.99})
    with pytest.raises(DataError, match="inclusion FOO"):
        CohortSpec(inclusion={"FOO": (1, 2)})
