"""Contexts of use shipped with medtwin (credibility reports: ``medtwin credibility``)."""
