"""The recorded credibility report: :class:`CredibilityRequest` (operation ``credibility``).

The spec stores the context of use (the whole COU mapping) and the model's name or reference; executing it
runs every check again (:func:`medtwin.credibility.credibility_report`), so :func:`medtwin.workflows.reproduce`
regenerates the report and compares its bytes with the recorded digest.

Examples
--------
>>> from medtwin.credibility import shipped_context
>>> r = CredibilityRequest("pk1_iv", shipped_context("pk1_iv_pheno"), open_data="public teaching data")
>>> spec = r.spec()
>>> spec.operation, spec.model, request_from_credibility_spec(spec, model=r.model).context.name
('credibility', 'pk1_iv', 'pheno_neonate_maintenance')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from medtwin.errors import DataError
from medtwin.governance import runs as _runs

__all__ = ["CredibilityRequest", "execute_credibility", "request_from_credibility_spec"]


@dataclass(frozen=True, eq=False)
class CredibilityRequest:
    """``credibility_report(model, context)``: ``model`` a Model or a library name, ``context`` a ContextOfUse."""

    model: Any
    context: Any
    purpose: str | None = None
    open_data: str | None = None
    operation: ClassVar[str] = "credibility"

    def __post_init__(self):
        from medtwin.core.model import Model
        from medtwin.credibility.context import ContextOfUse
        from medtwin.models import get_model

        if (self.purpose is None) == (self.open_data is None):
            raise DataError("CredibilityRequest: give exactly one of purpose (consented patient data) and "
                            "open_data (the reason the data are not identifiable)")
        if isinstance(self.model, str):
            object.__setattr__(self, "model", get_model(self.model))
        elif not isinstance(self.model, Model):
            raise DataError(f"CredibilityRequest: model must be a Model or a library model name, not "
                            f"{type(self.model).__name__}")
        if not isinstance(self.context, ContextOfUse):
            raise DataError(f"CredibilityRequest: context must be a ContextOfUse, not {type(self.context).__name__}")

    def spec(self) -> _runs.RunSpec:
        return _runs.RunSpec("credibility", _runs.stored_model(self.model), {"context": dict(self.context.data)},
                             {}, [], self.purpose, self.open_data)


def request_from_credibility_spec(spec: _runs.RunSpec, *, model) -> CredibilityRequest:
    """The request of a stored ``credibility`` spec (``model``: the resolved Model)."""
    from medtwin.credibility.context import ContextOfUse

    return CredibilityRequest(model, ContextOfUse.from_mapping(spec.inputs["context"]), purpose=spec.purpose,
                              open_data=spec.open_data)


def execute_credibility(request: CredibilityRequest, access, progress=None):
    """Generate the report (every check run now)."""
    from medtwin.credibility.report import credibility_report

    if progress is not None:
        progress(0, 1)
    report = credibility_report(request.model, request.context, access=access)
    if progress is not None:
        progress(1, 1)
    return report
