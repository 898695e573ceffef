"""The evidence values every section of a credibility report is made of.

Examples
--------
>>> c = Check("code verification", "closed form", PASS, "max rel. error 3e-12", "<= 1e-6")
>>> c.passed, verdict([c]), verdict([])
(True, 'pass', 'no evidence')
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FAIL", "Check", "Figure", "NOT_AVAILABLE", "PASS", "verdict"]

PASS, FAIL, NOT_AVAILABLE = "pass", "FAIL", "not available"


@dataclass(frozen=True)
class Check:
    """One check run for the report.

    Attributes
    ----------
    factor : str
        V&V 40 credibility factor (``code verification``, ``calculation verification``, ``validation``,
        ``applicability``, ``uncertainty``).
    name : str
        What was checked.
    status : str
        :data:`PASS`, :data:`FAIL` or :data:`NOT_AVAILABLE` (with the reason in ``measured``).
    measured : str
        The measured value(s), in words with units.
    criterion : str
        What passing means (the credibility goal at the COU's model risk).
    numbers : dict
        The measured numbers (JSON data).
    """

    factor: str
    name: str
    status: str
    measured: str
    criterion: str
    numbers: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == PASS


@dataclass(frozen=True)
class Figure:
    """A figure as deterministic SVG text with its caption and where its numbers came from."""

    key: str
    caption: str
    svg: str
    sources: dict = field(default_factory=dict)


def verdict(checks) -> str:
    """``FAIL`` if any check failed, ``pass`` if some passed and none failed, else ``no evidence``."""
    statuses = [c.status for c in checks]
    if FAIL in statuses:
        return FAIL
    if PASS in statuses:
        return PASS
    return "no evidence"
