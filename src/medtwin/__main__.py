"""``python -m medtwin``: the medtwin command line (:mod:`medtwin.cli`)."""

from medtwin.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
