"""``python -m medtwin.cli``: the medtwin command line."""

from medtwin.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
