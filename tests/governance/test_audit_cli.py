"""`medtwin audit verify` / `medtwin audit show` as a user runs them (SQLite installation in a temp folder)."""

import sqlalchemy as sa
from typer.testing import CliRunner

from medtwin.cli import app
from medtwin.cli.edge import open_audit_log as _open_audit_log

runner = CliRunner()


def _install(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDTWIN_HOME", str(tmp_path))
    monkeypatch.delenv("MEDTWIN_DATABASE_URL", raising=False)
    log, _ = _open_audit_log()
    log.append("dr.who", "simulate", {"model": "pk1_iv", "n": 3}, patient="P1")
    log.append("dr.who", "consent.add", {"purpose": "research"}, patient="P2")
    log.append("nurse", "simulate", {"model": "pk2_iv"}, patient="P1")
    return log


def test_verify_passes_then_names_the_tampered_entry(tmp_path, monkeypatch):
    log = _install(tmp_path, monkeypatch)
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "3 entries" in ok.output
    with log.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET payload = :p WHERE seq = 2"), {"p": '{"purpose":"treatment"}'})
    bad = runner.invoke(app, ["audit", "verify"])
    assert bad.exit_code == 1
    assert "entry 2" in bad.output
    assert (tmp_path / "keys").stat().st_mode & 0o077 == 0


def test_show_filters_by_patient(tmp_path, monkeypatch):
    _install(tmp_path, monkeypatch)
    result = runner.invoke(app, ["audit", "show", "--patient", "P1"])
    assert result.exit_code == 0, result.output
    assert "2 entries shown" in result.output and "consent.add" not in result.output
