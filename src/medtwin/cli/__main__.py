"""``python -m medtwin.cli``: the medtwin command line."""

from medtwin.cli import main

main()
