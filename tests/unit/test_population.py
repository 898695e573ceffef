"""Population values: covariate forms, Ω validation, file round trip, shipped files."""

import math

import numpy as np
import pytest

from medtwin.core.observation import ResidualError
from medtwin.core.population import CovariateEffect, InterOccasion, Population, Theta
from medtwin.errors import DataError, ParameterError, PopulationError
from medtwin.io.population_file import load_population, save_population, shipped_population_path
from medtwin.models import get_model
from medtwin.models.vancomycin import IIV_OMEGA2, RESIDUAL_ERROR


def _population(**changes):
    values = dict(
        name="demo", model="pk2_iv",
        thetas=(Theta("TVCL", 5.0, "L/h", lower=0), Theta("TVV1", 30.0, "L", lower=0), Theta("WT_CL", 0.75),
                Theta("AGE_CL", -0.01), Theta("CRCL_V1", 0.002), Theta("SEX_V1", -0.2, lower=-1)),
        typical={"CL": "TVCL", "V1": "TVV1"},
        effects=(CovariateEffect("CL", "WT", "power", "WT_CL", 70.0),
                 CovariateEffect("CL", "AGE", "exponential", "AGE_CL", 40.0),
                 CovariateEffect("V1", "CRCL", "linear", "CRCL_V1", 100.0),
                 CovariateEffect("V1", "SEX", "categorical", "SEX_V1", condition=("==", 1))),
        iiv=("CL", "V1"), omega=((0.09, 0.03), (0.03, 0.16)),
        iov=InterOccasion(("CL",), ((0.01,),)),
        residual=ResidualError("combined", additive=0.5, proportional=0.1),
        covariate_units={"WT": "kg", "AGE": "y", "CRCL": "mL/min", "SEX": "0/1"},
        citation="synthetic")
    values.update(changes)
    return Population(**values)


COV = {"WT": np.array([70.0, 35.0]), "AGE": np.array([40.0, 60.0]), "CRCL": np.array([100.0, 50.0]),
       "SEX": np.array([0.0, 1.0])}


def test_covariate_forms_by_hand():
    tv = _population().typical_parameters(COV)
    np.testing.assert_allclose(tv["CL"], 5.0 * np.array([1.0, 0.5**0.75 * math.exp(-0.01 * 20)]))
    np.testing.assert_allclose(tv["V1"], 30.0 * np.array([1.0, (1 + 0.002 * -50) * 0.8]))


def test_individual_parameters_are_log_normal_and_prior_has_iov():
    pop = _population()
    eta = np.array([[0.1, -0.2], [0.0, 0.3]])
    ind = pop.individual_parameters(COV, eta, kappa=np.array([[0.05], [0.0]]))
    tv = pop.typical_parameters(COV)
    np.testing.assert_allclose(ind["CL"], tv["CL"] * np.exp([0.15, 0.0]))
    np.testing.assert_allclose(ind["V1"], tv["V1"] * np.exp([-0.2, 0.3]))
    prior = pop.prior_for({k: v[1] for k, v in COV.items()})
    np.testing.assert_allclose(prior.covariance, [[0.10, 0.03], [0.03, 0.16]])
    np.testing.assert_allclose(prior.log_mean, np.log([tv["CL"][1], tv["V1"][1]]))
    assert prior.units == {"CL": "L/h", "V1": "L"}


@pytest.mark.parametrize("omega, message", [
    (((0.09, 0.03), (0.02, 0.16)), "omega: not symmetric"),
    (((0.09, 0.5), (0.5, 0.16)), "omega: not positive definite"),
    (((0.09,),), "omega: must be 2×2"),
    (((0.09, float("nan")), (float("nan"), 0.16)), "omega: has non-finite"),
])
def test_omega_validation_names_the_field(omega, message):
    with pytest.raises(PopulationError, match=message):
        _population(omega=omega)


def test_iov_omega_is_validated_too():
    with pytest.raises(PopulationError, match="iov.omega"):
        _population(iov=InterOccasion(("CL",), ((-0.01,),)))


@pytest.mark.parametrize("changes, message", [
    ({"typical": {"CL": "NOPE", "V1": "TVV1"}}, "typical.CL"),
    ({"effects": (CovariateEffect("Q", "WT", "power", 1.0, 70.0),)}, "effects.Q.WT"),
    ({"effects": (CovariateEffect("CL", "WT", "power", "MISSING", 70.0),)}, "effects.CL.WT: theta 'MISSING'"),
    ({"iiv": ("CL", "CL")}, "iiv"),
])
def test_inconsistencies_name_the_field(changes, message):
    with pytest.raises(PopulationError, match=message):
        _population(**changes)


def test_bad_effect_and_theta_definitions():
    with pytest.raises(PopulationError, match="form"):
        CovariateEffect("CL", "WT", "sigmoid", 1.0)
    with pytest.raises(PopulationError, match="condition"):
        CovariateEffect("CL", "SEX", "categorical", 0.1)
    with pytest.raises(PopulationError, match="thetas.TVCL"):
        Theta("TVCL", -1.0, lower=0.0)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    pop = _population()
    path = save_population(pop, tmp_path / f"pop{suffix}")
    back = load_population(path)
    assert back.to_dict() == pop.to_dict()
    for k in ("CL", "V1"):
        np.testing.assert_array_equal(back.typical_parameters(COV)[k], pop.typical_parameters(COV)[k])


def test_file_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nmodel: pk1_iv\nthetas: []\ntypical: {}\nresidual: {model: additive, additive_sd: 1}\n"
                    "iiv: {parameters: [], omega: []}\neffects: [{parameter: CL, covariate: WT, form: power, "
                    "theta: 1.0, colour: red}]\n")
    with pytest.raises(PopulationError, match=r"bad.yaml: effects\[0\]: unknown field"):
        load_population(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_population(path)


def test_shipped_pheno_file():
    pop = load_population(shipped_population_path("pheno"))
    tv = pop.typical_parameters({"WGT": np.array([1.4, 1.4]), "APGR": np.array([3.0, 7.0])})
    np.testing.assert_allclose(tv["CL"], 0.00469555 * 1.4)
    np.testing.assert_allclose(tv["V"], 0.984258 * 1.4 * np.array([1.15892, 1.0]))
    assert pop.residual.sigma2["proportional"] == pytest.approx(0.013241, rel=1e-12)
    assert "Grasela" in pop.citation


def test_shipped_vancomycin_file_matches_the_model():
    pop = load_population(shipped_population_path("vancomycin_goti2018"))
    model = get_model(pop.model)
    cov = {"CRCL": np.array([30.0, 120.0, 200.0]), "WT": np.array([50.0, 70.0, 110.0]),
           "DIAL": np.array([0.0, 1.0, 0.0])}
    ours, reference = pop.typical_parameters(cov), model.typical_parameters(cov)
    for name in ("CL", "V1", "Q", "V2"):
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-12)
    np.testing.assert_allclose(np.diag(pop.omega), [IIV_OMEGA2[k] for k in pop.iiv])
    assert (pop.residual.additive, pop.residual.proportional) == (RESIDUAL_ERROR["additive_sd"],
                                                                 RESIDUAL_ERROR["proportional_sd"])


def test_covariates_outside_the_declared_range_are_refused_naming_the_covariate():
    """Issue 12, point 7: a covariate outside the population's declared physiological range is refused."""
    from medtwin.io.population_file import load_population, shipped_population_path

    population = load_population(shipped_population_path("vancomycin_goti2018"))
    assert population.covariate_ranges["WT"] == (25.0, 300.0)
    ok = population.prior_for({"CRCL": 60.0, "WT": 75.0, "DIAL": 0.0})
    assert np.isfinite(ok.log_mean).all()
    with pytest.raises(ParameterError, match=r"covariate WT = 5000 kg is outside the range \[25, 300\]"):
        population.prior_for({"CRCL": 60.0, "WT": 5000.0, "DIAL": 0.0})
    with pytest.raises(ParameterError, match=r"covariate DIAL = 2 .*\(patient index 1\)"):
        population.typical_parameters({"CRCL": [60.0, 70.0], "WT": [70.0, 80.0], "DIAL": [0.0, 2.0]})
    again = type(population).from_dict(population.to_dict())
    assert again.covariate_ranges == population.covariate_ranges
    with pytest.raises(PopulationError, match=r"covariate_ranges.WT: need finite low < high"):
        type(population).from_dict({**population.to_dict(), "covariate_ranges": {"WT": [300, 25]}})
