"""``medtwin serve`` is registered in the command line and starts the app by its import string."""

from __future__ import annotations

from typer.testing import CliRunner


def test_serve_command_is_registered():
    from medtwin.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--demo"):
        assert option in result.output


def test_unknown_path_names_the_field(sqlite_service):
    r = sqlite_service.get("/no/such/thing")
    assert r.status_code == 404 and r.json()["detail"]["field"] == "path"
