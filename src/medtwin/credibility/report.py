"""The credibility report: one generator for every model and context of use, all evidence computed now.

:func:`credibility_report` runs the verification checks on the model, the validation against the comparator
data the COU names, the uncertainty quantification for the decision and the applicability check, grades each
V&V 40 credibility factor against the goals of the COU's model risk, and renders one self-contained HTML
document (figures inlined as deterministic SVG).  The HTML holds no wall-clock time and depends only on the
model, the COU, the data, the code and the seeds, so a recorded run reproduces it bit for bit; the time, the
run id and the Ed25519 signature are in the signed provenance record written beside it.

Verdicts: verification FAILS when any check fails; validation with no comparator data is reported as *no
evidence* and never passes; the model is credible for the COU only when verification, validation and
applicability all meet their goals.  The uncertainty section (posterior, Sobol indices, P(safe)) says whether
the *decision* meets its safety requirement; it does not make the model more or less credible.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from medtwin.credibility.context import GOALS, LEVELS, ContextOfUse, goals_for
from medtwin.credibility.evidence import FAIL, PASS, verdict
from medtwin.credibility.uq import uq_evidence
from medtwin.credibility.validation import applicability_evidence, validation_evidence
from medtwin.credibility.verification import verification_evidence
from medtwin.errors import DataError

__all__ = ["CredibilityReport", "credibility_report"]

_SECTIONS = ("verification", "validation", "applicability", "uncertainty")
_FACTORS = ("verification", "validation", "applicability")  # the V&V 40 credibility factors graded
_DEPENDENCIES = ("numpy", "scipy", "jax", "numba", "matplotlib", "pandas", "SALib", "arviz")


@dataclass(frozen=True, eq=False)
class CredibilityReport:
    """A generated report: its HTML, the checks behind it and the verdict per section.

    ``provenance_content()`` is what a recorded run digests (the HTML bytes: bit-identical on reproduce).
    """

    model: str
    context: str
    risk: int
    verdicts: Mapping[str, str]
    credible: bool
    checks: tuple
    html: str = field(repr=False)

    @property
    def patient(self):  # no patient data are recorded with a report
        return None

    @property
    def digest(self) -> str:
        """``sha256:`` of the HTML bytes."""
        return "sha256:" + hashlib.sha256(self.html.encode("utf-8")).hexdigest()

    def provenance_content(self) -> dict:
        data = np.frombuffer(self.html.encode("utf-8"), dtype=np.uint8)
        return {"content": {"html": data, "verdicts": dict(self.verdicts), "credible": self.credible},
                "outputs": {"report_html": data}, "solver": {"method": "credibility-report"}}


def credibility_report(model, cou: ContextOfUse, *, access, code: Mapping | None = None) -> CredibilityReport:
    """Run every check for ``model`` in context ``cou`` and render the report.

    Parameters
    ----------
    model : Model
        The model under test; it claims the specification named ``model.name``.
    cou : ContextOfUse
    access : DataAccess
        How comparator data are read (consent gate; open data for public teaching sets).
    code : mapping, optional
        The code to state (default: medtwin's version and the SHA-256 of the report generator's source; the
        git commit is in the signed run record, so an unrelated commit does not change the report).

    Returns
    -------
    CredibilityReport
    """
    from medtwin.governance.provenance import dependency_versions

    if model.name != cou.model:
        raise DataError(f"the context of use {cou.name!r} is for model {cou.model!r}, not {model.name!r}")
    goals = goals_for(cou.risk)
    seed = cou.seed
    ver_checks, ver_figs = verification_evidence(model, cou.section("verification"), goals, access=access)
    val_checks, val_figs, dataset, sources = validation_evidence(model, cou.section("validation"),
                                                                 goals["validation"], access=access, seed=seed)
    app_checks = applicability_evidence(cou.section("population").get("covariates", {}), dataset,
                                        goals["applicability"])
    uq_checks, uq_figs, facts = uq_evidence(model, cou.section("uncertainty"), cou.section("decision"), seed=seed)
    sections = {"verification": (ver_checks, ver_figs), "validation": (val_checks, val_figs),
                "applicability": (app_checks, []), "uncertainty": (uq_checks, uq_figs)}
    verdicts = {name: verdict(checks) for name, (checks, _) in sections.items()}
    credible = all(verdicts[s] == PASS for s in _FACTORS)  # UQ informs the decision, not the credibility
    provenance = {
        "model": {"name": model.name, "digest": "sha256:" + model.digest(), "description": model.description},
        "context_of_use": "sha256:" + hashlib.sha256(json.dumps(cou.data, sort_keys=True, default=str)
                                                      .encode()).hexdigest(),
        "data": sources, "seed": seed, "code": dict(code if code is not None else _code()),
        "dependencies": dependency_versions(_DEPENDENCIES),
    }
    text = _render(model, cou, goals, sections, verdicts, credible, facts, provenance)
    every = tuple(c for checks, _ in sections.values() for c in checks)
    return CredibilityReport(model.name, cou.name, cou.risk, verdicts, credible, every, text)


def _code() -> dict:
    """medtwin's version and the digest of this package's source files (the generator and its references)."""
    from pathlib import Path

    from medtwin.governance.provenance import code_version

    folder = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return {"package": "medtwin", "version": code_version()["version"], "credibility_source": "sha256:" + h.hexdigest()}


# ------------------------------------------------------------------------------- HTML
_CSS = """body{font-family:DejaVu Sans,Arial,sans-serif;max-width:1000px;margin:2em auto;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.3em .6em;
vertical-align:top;text-align:left}th{background:#f2f2f2}.pass{color:#fff;background:#2e7d32}
.FAIL{color:#fff;background:#c62828}.na{color:#333;background:#e0e0e0}.badge{padding:.1em .5em;border-radius:.3em;
font-weight:bold;white-space:nowrap}figure{display:inline-block;margin:.5em;vertical-align:top;max-width:48%}
figure svg{max-width:100%;height:auto}figcaption{font-size:.85em;color:#444}.risk td.on{background:#ffcc80;
font-weight:bold}code{font-size:.85em;word-break:break-all}"""


def _badge(status: str) -> str:
    cls = {PASS: "pass", FAIL: "FAIL"}.get(status, "na")
    return f'<span class="badge {cls}">{html.escape(status)}</span>'


def _e(value) -> str:
    return html.escape(str(value))


def _risk_table(cou: ContextOfUse) -> str:
    head = "".join(f"<th>consequence: {c}</th>" for c in LEVELS)
    rows = []
    for i in reversed(LEVELS):
        cells = "".join(f'<td class="{"on" if (i, c) == (cou.influence, cou.consequence) else ""}">'
                        f'{LEVELS.index(i) + LEVELS.index(c) + 1}</td>' for c in LEVELS)
        rows.append(f"<tr><th>influence: {i}</th>{cells}</tr>")
    return f'<table class="risk"><tr><th></th>{head}</tr>{"".join(rows)}</table>'


def _goal_table(goals, checks) -> str:
    rows = "".join(f"<tr><td>{_e(f)}</td><td>{_e(json.dumps(goals[f], sort_keys=True))}</td>"
                   f"<td>{_badge(verdict([c for c in checks if c.factor == f]))}</td></tr>" for f in GOALS)
    return f"<table><tr><th>credibility factor</th><th>goal at this risk</th><th>achieved</th></tr>{rows}</table>"


def _checks_table(checks) -> str:
    rows = "".join(f"<tr><td>{_e(c.factor)}</td><td>{_e(c.name)}</td><td>{_badge(c.status)}</td>"
                   f"<td>{_e(c.measured)}</td><td>{_e(c.criterion)}</td></tr>" for c in checks)
    return ("<table><tr><th>factor</th><th>check</th><th>result</th><th>measured</th><th>criterion</th></tr>"
            f"{rows}</table>")


def _figures(figures) -> str:
    out = []
    for f in figures:
        sha = hashlib.sha256(f.svg.encode("utf-8")).hexdigest()
        src = "; ".join(f"{k}: {v}" for k, v in sorted(f.sources.items())) or "computed in this report"
        out.append(f'<figure id="fig-{_e(f.key)}">{f.svg}<figcaption>{_e(f.caption)}<br><small>figure '
                   f'sha256:{sha[:16]}… · sources: {_e(src)}</small></figcaption></figure>')
    return "".join(out)


def _render(model, cou, goals, sections, verdicts, credible, facts, provenance) -> str:
    d = cou.data
    overall = (_badge(PASS) + " credible for this context of use" if credible else
               _badge(FAIL) + " credibility NOT established for this context of use")
    p_safe = next((c for c in sections["uncertainty"][0] if c.name.startswith("P(safe)")), None)
    if p_safe is not None:
        overall += (f"; the decision {'meets' if p_safe.passed else 'does NOT meet'} its safety requirement "
                    f"({_e(p_safe.measured.split(' (MC SE')[0])}, required {_e(p_safe.criterion)})")
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Credibility report: "
             f"{_e(model.name)} — {_e(cou.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>Credibility report: {_e(model.name)} — {_e(cou.name)}</h1>",
             f"<p>{overall}. Generated by medtwin from evidence computed for this report (ASME V&amp;V 40-2018; "
             "FDA 2023 guidance <i>Assessing the Credibility of Computational Modeling and Simulation in Medical "
             "Device Submissions</i>).</p>",
             "<table>" + "".join(f"<tr><th>{_e(s)}</th><td>{_badge(verdicts[s])}</td></tr>" for s in _SECTIONS)
             + "</table>",
             "<h2>1. Question of interest and context of use</h2>",
             f"<p><b>Question of interest.</b> {_e(cou.question)}</p><p><b>Context of use.</b> {_e(cou.context)}</p>",
             f"<p><b>Decision.</b> {_e(cou.section('decision').get('description', ''))}</p>",
             f"<p><b>Model.</b> {_e(model.name)}: {_e(model.description)}. {_e(model.citation or '')}</p>",
             "<h2>2. Model risk and credibility goals</h2>",
             f"<p>Model influence: <b>{_e(cou.influence)}</b> — {_e(d.get('model_influence_rationale', ''))}<br>"
             f"Decision consequence: <b>{_e(cou.consequence)}</b> — "
             f"{_e(d.get('decision_consequence_rationale', ''))}</p>",
             _risk_table(cou), f"<p>Model risk: <b>{cou.risk}</b> of 5.</p>",
             _goal_table(goals, [c for checks, _ in sections.values() for c in checks])]
    titles = {"verification": "3. Verification (code and calculation)", "validation": "4. Validation",
              "applicability": "5. Applicability", "uncertainty": "6. Uncertainty quantification"}
    for name in _SECTIONS:
        checks, figures = sections[name]
        parts.append(f"<h2>{titles[name]}: {_badge(verdicts[name])}</h2>")
        if name == "validation" and verdicts[name] == "no evidence":
            parts.append("<p><b>This model has no validation evidence for this context of use.</b> It is "
                         "reported as such and not passed.</p>")
        if name == "uncertainty":
            rows = "".join(f"<tr><td>{_e(r[0])}</td><td>{_e(r[1])}</td><td>{r[2]:.4g}</td><td>{r[3]:.4g}</td>"
                           f"<td>{r[4]:.4g}–{r[5]:.4g}</td></tr>" for r in facts["rows"])
            parts.append(f"<p>{_e(facts['note'])}</p><table><tr><th>parameter</th><th>unit</th><th>prior median"
                         f"</th><th>median</th><th>90 % interval</th></tr>{rows}</table>")
        parts += [_checks_table(checks), _figures(figures)]
    parts.append("<h2>7. Provenance and signature</h2>")
    parts.append(f"<pre><code>{_e(json.dumps(provenance, indent=1, sort_keys=True))}</code></pre>")
    parts.append("<p>Every figure above carries the SHA-256 of its SVG and the digests of the data it was computed "
                 "from. This document holds no time of day: the run id, the time, the operator, the git commit and "
                 "the Ed25519 signature over the document's digest are in the signed provenance record beside it "
                 "(<code>provenance.json</code>); <code>medtwin reproduce RUN_ID</code> regenerates the report and "
                 "compares it bit for bit.</p></body></html>")
    return "\n".join(parts) + "\n"
