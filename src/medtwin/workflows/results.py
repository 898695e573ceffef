"""Results of the workflows that bundle several values, each digestible into a provenance record.

Every result provides ``provenance_content()`` (see
:func:`medtwin.governance.provenance.result_view`): what the signed record
digests, so that :func:`medtwin.workflows.reproduce` compares it bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Forecast", "Recommended", "Replayed", "recommendation_from_content"]


@dataclass(frozen=True)
class Forecast:
    """A forecast: the posterior, its predictive band and the exposure summary (:func:`medtwin.infer.exposure.exposure`).

    Its record digests the band (as a forecast run always has).
    """

    posterior: Any
    band: Any
    exposure: Any

    def provenance_content(self) -> dict:
        return self.band.provenance_content()


@dataclass(frozen=True)
class Recommended:
    """A recommendation with the posterior it was computed from.

    Its record digests the recommendation's content (``outputs.recommendation``:
    :func:`~medtwin.control.decisions.recommendation_content`) and the draws of its
    predicted and current bands.
    """

    posterior: Any
    recommendation: Any

    def provenance_content(self) -> dict:
        from medtwin.control.decisions import recommendation_content

        content = recommendation_content(self.recommendation)
        outputs: dict = {"recommendation": content}
        for label in ("predicted", "current"):
            band = getattr(self.recommendation, label)
            if band is not None:
                outputs.update({f"{label}.{name}": np.asarray(v) for name, v in band.draws.items()})
        return {"content": outputs, "outputs": outputs, "solver": {"method": self.recommendation.kind}}


def recommendation_from_content(content: dict):
    """The Recommendation whose :func:`~medtwin.control.decisions.recommendation_content` is *content*
    (the bands are not part of it: None)."""
    from medtwin.control.recommendation import Recommendation

    fields = {k: v for k, v in content.items() if k != "summary"}
    fields["active_constraints"] = tuple(fields.get("active_constraints", ()))
    fields["runner_ups"] = tuple(fields.get("runner_ups", ()))
    return Recommendation(**fields)


@dataclass(frozen=True)
class Replayed:
    """A replay: the final twin, one row per arrival, the alarms, the clock check and what was rejected.

    Its record digests the final twin (history included), as a replay's always has.
    """

    twin: Any
    start: Any
    model: Any
    rows: tuple
    raised: tuple
    clocks: tuple
    verdict: dict | None
    rejected: tuple
    n_measurements: int
    patient: str | None

    def provenance_content(self) -> dict:
        return self.twin.provenance_content()
