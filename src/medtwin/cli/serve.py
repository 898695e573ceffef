"""``medtwin serve``: run the web service (uvicorn) -- by import string, so the CLI never imports the service."""

from __future__ import annotations

import os

import typer

__all__ = ["register", "serve_command"]


def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    demo: bool = typer.Option(False, "--demo", help="Seed the demo ward (users, the shipped patients)."),
    workers: int = typer.Option(1, "--workers", min=1, help="uvicorn worker processes."),
) -> None:
    """Serve the REST API and the dashboard (database: MEDTWIN_DATABASE_URL or the default SQLite file)."""
    import uvicorn

    if demo:
        os.environ["MEDTWIN_DEMO"] = "1"  # read by the service's settings in the server process
    uvicorn.run("medtwin.service.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_config=None, access_log=False, timeout_graceful_shutdown=10)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to *app*."""
    app.command("serve")(serve_command)
