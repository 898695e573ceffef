"""Credibility reports: the risk matrix, a broken model failing verification, no validation evidence never
passing, and a recorded report reproduced bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medtwin.credibility import credibility_report, model_risk
from medtwin.credibility.context import goals_for
from medtwin.credibility.verification import verification_evidence
from medtwin.errors import DataError
from medtwin.io.access import OpenData
from medtwin.models import get_model

ACCESS = OpenData("public teaching data")


def test_risk_matrix_is_the_vv40_three_by_three():
    grid = [[model_risk(i, c) for c in ("low", "medium", "high")] for i in ("low", "medium", "high")]
    assert grid == [[1, 2, 3], [2, 3, 4], [3, 4, 5]]
    with pytest.raises(DataError, match="model_influence"):
        model_risk("huge", "low")
    assert goals_for(5)["code verification"]["closed_form_rtol"] < goals_for(1)["code verification"]["closed_form_rtol"]


def _broken_pk1_iv():
    """pk1_iv with the wrong elimination rate constant CL/(2V): it still claims to be pk1_iv."""
    return get_model("pk1_iv").with_changes(linear_matrix=lambda p: ((-p[0] / (2.0 * p[1]),),))


def test_broken_elimination_fails_verification_in_the_report(small):
    from medtwin.credibility import ContextOfUse

    data = dict(small("pk1_iv_pheno").data)  # no validation and prior draws only: no JAX compilation of the
    data["validation"] = {}                 # broken model (verification is what this test is about)
    data["uncertainty"] = {"parameters": {"CL": {"median": 0.0066, "log_sd": 0.3}}, "n_draws": 100}
    cou = ContextOfUse.from_mapping(data)
    report = credibility_report(_broken_pk1_iv(), cou, access=ACCESS)
    assert report.verdicts["verification"] == "FAIL" and not report.credible
    failed = {c.name for c in report.checks if c.factor == "code verification" and c.status == "FAIL"}
    assert {"closed form (reference solution)", "mass balance"} <= failed
    assert any(name.startswith("NONMEM conformance") for name in failed) or "not available" in report.html
    assert "<h2>3. Verification (code and calculation): <span class=\"badge FAIL\">FAIL" in report.html


def test_the_library_model_passes_the_same_checks():
    cou_spec = {"params": {"CL": 0.0066, "V": 1.4}, "regimen": [{"time": 0, "amount": 25.0},
                {"time": 12, "amount": 3.5, "ii": 12, "addl": 5}], "times": {"end": 96, "step": 1},
                "order_steps": {"euler": 1.0, "heun": 6.0, "rk4": 12.0}}
    checks, _ = verification_evidence(get_model("pk1_iv"), cou_spec, goals_for(4), figures=False)
    assert [c.status for c in checks] == ["pass"] * len(checks)
    broken, _ = verification_evidence(_broken_pk1_iv(), cou_spec, goals_for(4), figures=False)
    closed = next(c for c in broken if c.name.startswith("closed form"))
    assert closed.numbers["max_relative_error"] > 0.1  # the half-rate elimination is far from the closed form


def test_no_validation_evidence_is_reported_and_never_passed_and_reproduces(small, tmp_path):
    from medtwin import workflows
    from medtwin.io.storage import make_engine
    from medtwin.workflows.credibility import CredibilityRequest

    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    stores = workflows.Stores.for_engine(engine, Ed25519PrivateKey.generate())
    cou = small("icu_glucose")
    report, record = workflows.run(CredibilityRequest("icing", cou, open_data="no patient data"), stores,
                                   actor="qa")
    assert report.verdicts["validation"] == "no evidence" and not report.credible
    assert "has no validation evidence" in report.html
    assert record.output_digests["report_html"].startswith("sha256:")
    again = workflows.reproduce_run(stores, record.run_id, actor="qa")
    assert again.identical, again.summary()
    assert record.time[:16] not in report.html and record.run_id not in report.html  # no wall clock, no run id
    engine.dispose()
    assert np.isfinite(next(c for c in report.checks if c.name.startswith("P(safe)")).numbers["p_safe"])


def test_cli_refuses_a_context_for_another_model_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from medtwin.cli import app
    from medtwin.credibility.context import shipped_context_path

    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["credibility", "vancomycin_goti2018", "--context-of-use",
                                      str(shipped_context_path("pk1_iv_pheno")), "--out", str(out)])
    assert result.exit_code == 2 and "is for model 'pk1_iv'" in " ".join(result.output.split())
    assert not out.exists()
