"""The ``medtwin`` command line: parse -> request -> :func:`medtwin.workflows.run` -> render.

One module per command group, each adding its commands to :data:`app` through ``register(app)``:

* :mod:`~medtwin.cli.basics`: ``models``, ``simulate``, ``demo``
* :mod:`~medtwin.cli.infer`: ``fit``, ``personalize``, ``forecast``
* :mod:`~medtwin.cli.control`: ``recommend``, ``decide``, ``closed-loop``
* :mod:`~medtwin.cli.twin`: ``replay``
* :mod:`~medtwin.cli.governance`: ``runs``, ``provenance``, ``reproduce``, ``audit``, ``consent``
* :mod:`~medtwin.cli.credibility`: ``credibility``
* :mod:`~medtwin.cli.imaging`: ``mre phantom``, ``mre invert``
* :mod:`~medtwin.cli.evaluate`: ``evaluate``
* :mod:`~medtwin.cli.trial`: ``trial``
* :mod:`~medtwin.cli.serve`: ``serve``

:mod:`~medtwin.cli.edge` holds what every command shares (input and ``--out`` checks, options, consoles, the
one-line ``error:`` exit, the stores) and :mod:`~medtwin.cli.render` how results are shown.  Errors from the
library's exception tree are printed as one clear line and exit with status 2.  The process starts in
:func:`main` (console script ``medtwin = "medtwin.cli:main"``; ``python -m medtwin``, ``python -m medtwin.cli``), through
:class:`~medtwin.cli.edge.MedtwinGroup.main`.
"""

from __future__ import annotations

import typer

from medtwin.cli import basics, control, credibility, evaluate, governance, imaging, infer, serve, trial, twin
from medtwin.cli.edge import MedtwinGroup
from medtwin.cli.process import run_and_exit

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="medtwin: medical digital twins.",
                  cls=MedtwinGroup)
for _group in (basics, infer, control, twin, governance, credibility, imaging, evaluate, trial, serve):
    _group.register(app)


def main() -> None:  # pragma: no cover - console entry point
    run_and_exit(app)  # ends the process without the interpreter's teardown (medtwin.cli.process)
