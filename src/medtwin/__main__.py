"""``python -m medtwin``: the medtwin command line (:mod:`medtwin.cli`)."""

from medtwin.cli import main

main()
