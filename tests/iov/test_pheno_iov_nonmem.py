"""medtwin's FOCEI with IOV against a real NONMEM IOV run: the pharmpy repository's QA model iov.mod.

iov.mod (phenobarbital, ADVAN1 TRANS2; IIV and IOV on CL and V, BLOCK(2) + BLOCK(2) SAME by the flag FA1; FOCE
with interaction; NONMEM 7.4.4) is translated in tests/data/pheno_iov.yaml; NONMEM's iteration-0 and final
OFV, estimates and per-subject results (iov.ext, iov.phi: repository, path and commit in the file) are in
tests/data/pheno_iov_nonmem.yaml.  In pheno.dta FA1 is 1 on dose records and 0 on observation records, so the
result depends on NONMEM's rule that the system is advanced to record i with record i's parameters
(iov.timing "nonmem"): checked here against an ADVAN1 closed form and against NONMEM's objective values, which
need no optimiser (NONMEM's own initial OFV, and its final OFV at its final estimates).
"""

import dataclasses
import importlib.resources
import io
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from medtwin.core.population import Population
from medtwin.errors import EstimationError, PopulationError
from medtwin.infer.objective import Problem
from medtwin.infer.occasions import NONMEM_CHANGE_OFFSET, subject_occasions
from medtwin.io.access import OpenData
from medtwin.io.nonmem import read_nonmem
from medtwin.io.population_file import load_population
from medtwin.models import get_model

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def pheno():
    path = Path(str(importlib.resources.files("pharmpy") / "internals" / "example_models" / "pheno.dta"))
    if not path.exists():
        pytest.skip("pharmpy does not ship pheno.dta in this version")
    return read_nonmem(path, access=OpenData("pharmpy's de-identified phenobarbital example"))


@pytest.fixture(scope="module")
def reference():
    return yaml.safe_load((DATA / "pheno_iov_nonmem.yaml").read_text())


def _at(population, values):
    residual = dataclasses.replace(population.residual, proportional=math.sqrt(values["sigma"]))
    return population.with_values(theta=dict(zip(("TVCL", "TVV"), values["theta"])),
                                  omega=np.array(values["omega_iiv"]), residual=residual,
                                  iov_omega=np.array(values["omega_iov"]))


def _objective(population, dataset):
    problem = Problem(population, get_model("pk1_iv"), dataset)
    omega = problem.full_omega(np.asarray(population.omega), np.asarray(population.iov.omega))[None]
    inner = problem.inner(problem.log_typical(population.theta_values())[None], omega, np.zeros(1),
                          np.array([population.residual.proportional ** 2]),
                          np.zeros((1, problem.n_subjects, problem.n_random)), tol=1e-10)
    assert inner.converged.all()
    return inner


def test_translation_holds_iov_mod_initial_estimates(reference):
    pop = load_population(DATA / "pheno_iov.yaml")
    initial = reference["initial"]
    assert [t.value for t in pop.thetas] == initial["theta"]
    np.testing.assert_array_equal(pop.omega, initial["omega_iiv"])
    np.testing.assert_array_equal(pop.iov.omega, initial["omega_iov"])
    assert pop.residual.proportional ** 2 == pytest.approx(initial["sigma"], rel=1e-12)
    assert (pop.iov.parameters, pop.iov.occasion, pop.iov.timing) == (("CL", "V"), "FA1", "nonmem")
    # iov.phi's per-subject OBJ add up to the final OFV of iov.ext (the transcription is complete)
    assert sum(row[7] for row in reference["subjects"]) == pytest.approx(reference["final"]["ofv"], abs=1e-9)


def test_pheno_flag_is_one_on_doses_zero_on_observations(pheno):
    frame = pheno.frame
    assert ((frame.AMT > 0) == (frame.FA1 == 1)).all() and len(frame) == 744 and int((frame.FA1 == 0).sum()) == 155


def _advan1_nonmem(records, cl, v):
    """C at the observation records of one subject, ADVAN1 written out with PREDPP's rule: the amount decays from
    record i-1 to record i with k = CL/V of record i, and an observation is A/V with its own record's V."""
    amount, last, out = 0.0, records[0][0], []
    for time, dose, flag in records:
        amount *= math.exp(-cl[flag] / v[flag] * (time - last))
        last = time
        if dose > 0:
            amount += dose
        else:
            out.append(amount / v[flag])
    return np.array(out)


def test_predictions_follow_nonmem_record_timing(pheno):
    """Subjects 1 and 2 with different κ per occasion vs the closed form (independent of medtwin's solver)."""
    pop = load_population(DATA / "pheno_iov.yaml")
    problem = Problem(pop, get_model("pk1_iv"), pheno)
    r = np.zeros((problem.n_subjects, problem.n_random))
    # (η_CL, η_V, κ_CL, κ_V of occasion 0 = FA1 1 = doses, κ_CL, κ_V of occasion 1 = FA1 0 = observations)
    r[0] = [0.1, -0.2, 0.6, -0.3, -0.5, 0.4]
    r[1] = [-0.3, 0.2, -0.4, 0.5, 0.7, -0.6]
    f = problem.predict(problem.random_log_parameters(problem.log_typical(pop.theta_values()), r)[None])[0]
    theta = pop.theta_values()
    frame = pheno.frame
    for i, subject in enumerate((1, 2)):
        rows = frame[frame.ID == subject]
        records = list(zip(rows.TIME, rows.AMT, rows.FA1.astype(int)))
        cl = {1: theta["TVCL"] * math.exp(r[i, 0] + r[i, 2]), 0: theta["TVCL"] * math.exp(r[i, 0] + r[i, 4])}
        v = {1: theta["TVV"] * math.exp(r[i, 1] + r[i, 3]), 0: theta["TVV"] * math.exp(r[i, 1] + r[i, 5])}
        np.testing.assert_allclose(f[problem.seg == i], _advan1_nonmem(records, cl, v), rtol=1e-8)


def test_objective_at_nonmem_initial_estimates_is_nonmem_iteration_zero(pheno, reference):
    """NONMEM's iteration-0 OFV 1068.6245 (iov.ext), no optimiser involved; the other timing misses it by ~5."""
    pop = load_population(DATA / "pheno_iov.yaml")
    ofv = float(_objective(pop, pheno).ofv_subject.sum())
    assert ofv == pytest.approx(reference["initial"]["ofv"], abs=1e-3)
    record = dataclasses.replace(pop, iov=dataclasses.replace(pop.iov, timing="record"))
    assert abs(float(_objective(record, pheno).ofv_subject.sum()) - reference["initial"]["ofv"]) > 1.0


def test_objective_and_ebes_at_nonmem_final_estimates(pheno, reference):
    """NONMEM's final OFV 688.5797 and iov.phi's per-subject OBJ and EBEs at its final estimates (6 digits)."""
    pop = _at(load_population(DATA / "pheno_iov.yaml"), reference["final"])
    inner = _objective(pop, pheno)
    phi = np.array(reference["subjects"], float)
    assert float(inner.ofv_subject.sum()) == pytest.approx(reference["final"]["ofv"], abs=1e-3)
    np.testing.assert_allclose(inner.ofv_subject[0], phi[:, 7], atol=1e-3)
    # medtwin's occasion 0 is FA1 = 1 (first record): NONMEM's ETA(5), ETA(6); occasion 1 is ETA(3), ETA(4)
    np.testing.assert_allclose(inner.eta[0][:, [0, 1, 4, 5, 2, 3]], phi[:, 1:7], atol=1e-4)


def _records(text):
    return read_nonmem(io.StringIO(text), access=OpenData("synthetic records"))


def test_nonmem_timing_changes_after_the_previous_record():
    data = _records("ID TIME AMT DV OCC\n1 0 10 0 1\n1 2 0 1.0 0\n1 5 10 0 1\n1 7 10 0 1\n1 9 0 1.0 0\n"
                    "2 0 10 0 4\n2 3 0 1.0 4\n")
    record = subject_occasions(data, "OCC")
    assert record.change_times.tolist() == [2.0, 5.0, 9.0]
    nonmem = subject_occasions(data, "OCC", timing="nonmem")
    assert nonmem.change_times.tolist() == [t + NONMEM_CHANGE_OFFSET for t in (0.0, 2.0, 7.0)]
    assert nonmem.active.tolist() == [[1, 0, 1], [0, 0, 0]]
    assert [o.tolist() for o in nonmem.obs_occasion] == [[1, 1], [0]]  # each record keeps its own occasion


def test_nonmem_timing_refuses_tied_records_of_different_occasions():
    data = _records("ID TIME AMT DV OCC\n1 0 10 0 1\n1 2 0 1.0 1\n1 2 10 0 2\n1 4 0 1.0 2\n")
    assert subject_occasions(data, "OCC").change_times.tolist() == [2.0]
    with pytest.raises(EstimationError, match="row 3, column OCC.*same time"):
        subject_occasions(data, "OCC", timing="nonmem")
    with pytest.raises(EstimationError, match="iov.timing"):
        subject_occasions(data, "OCC", timing="later")


def test_timing_round_trips_and_is_validated():
    pop = load_population(DATA / "pheno_iov.yaml")
    assert Population.from_dict(pop.to_dict()).iov.timing == "nonmem"
    plain = dataclasses.replace(pop, iov=dataclasses.replace(pop.iov, timing="record"))
    assert "timing" not in plain.to_dict()["iov"]  # the default is not written: older files read the same
    data = pop.to_dict()
    data["iov"]["timing"] = "backward"
    with pytest.raises(PopulationError, match="iov.timing"):
        Population.from_dict(data)
