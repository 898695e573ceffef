"""Occasions of a NONMEM-style dataset for inter-occasion variability (IOV).

NONMEM codes IOV by an occasion column (``OCC``, ``VISI``…) and one κ per
occasion, all with the same Ω block (``$OMEGA BLOCK(1) … $OMEGA BLOCK(1) SAME``).
Here, per subject, the distinct values of the occasion column are numbered
0, 1, … in order of first appearance (a value that reappears uses its κ again);
the parameter of occasion k is TV · exp(η + κ_k) from the time of the first
record of that occasion on (a piecewise-constant parameter of
:func:`medtwin.core.simulate.simulate`, applied before any reset, steady-state
record or dose at that time, as NONMEM reads the record's PK block first).

With ``timing="nonmem"`` the occasion of each *interval* is the occasion of the
record that closes it: NONMEM's PREDPP calls $PK at every event record and
advances the system from the previous record's time t_{i−1} to the record's
time t_i with the parameters computed at record i ("next observation carried
backward").  The parameter change into record i's occasion therefore happens
just after record i−1, at t_{i−1} + :data:`NONMEM_CHANGE_OFFSET` (after
record i−1's own observation, dose, lag and bioavailability were evaluated
with its own occasion, since :func:`~medtwin.core.simulate.simulate` applies a
change at time t before the records at t).  The offset is the only
approximation: over it the previous occasion's parameters still act, a
relative error of at most offset·|Δk| in the state (about 1e-9 for rate
constants below 10/h).  This matters when the occasion column differs between
neighbouring records — e.g. pharmpy's ``iov.mod``, whose occasion flag FA1 is
1 on dose records and 0 on observation records: every interval ending at an
observation decays with occasion 0's parameters, every interval ending at a
dose with occasion 1's.  Two records at the same time with different
occasions cannot be separated this way and are refused.

Examples
--------
>>> import io
>>> from medtwin.io.access import OpenData
>>> from medtwin.io.nonmem import read_nonmem
>>> text = "ID TIME AMT DV OCC\\n1 0 10 0 1\\n1 2 0 1.0 1\\n1 24 10 0 2\\n1 26 0 1.1 2\\n2 0 10 0 5\\n2 2 0 0.9 5\\n"
>>> occ = subject_occasions(read_nonmem(io.StringIO(text), access=OpenData("synthetic records")), "OCC")
>>> occ.n_occasions, occ.change_times.tolist(), occ.active.tolist()
(2, [24.0], [[1], [0]])
>>> [o.tolist() for o in occ.obs_occasion]
[[0, 1], [0]]
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from medtwin.errors import EstimationError

__all__ = ["Occasions", "subject_occasions", "occasion_parts"]


@dataclass(frozen=True)
class Occasions:
    """Occasion layout of a dataset (N subjects).

    Attributes
    ----------
    n_occasions : int
        K, the largest number of occasions of a subject (subjects with fewer have κ's without data:
        they cancel exactly in the FOCEI objective, their EBE is 0).
    change_times : ndarray, shape (C,)
        Sorted union of the times (h) at which some subject enters a new occasion.
    active : ndarray of int, shape (N, C)
        Occasion index of each subject from ``change_times[c]`` on.
    obs_occasion : list of int arrays
        Per subject, the occasion index of each EVID 0/2 record (``Subject.obs_times`` order).
    dose_occasion : list of int arrays
        Per subject, the occasion index of each dose/reset record (``Subject.regimen`` order).
    count : ndarray of int, shape (N,)
        Occasions of each subject.
    """

    n_occasions: int
    change_times: np.ndarray
    active: np.ndarray
    obs_occasion: list
    dose_occasion: list
    count: np.ndarray


#: Time (h) after record i−1 at which ``timing="nonmem"`` switches to record i's occasion (module docstring).
NONMEM_CHANGE_OFFSET = 1e-7


def subject_occasions(dataset, column: str, timing: str = "record") -> Occasions:
    """The :class:`Occasions` of ``dataset`` read from its column ``column`` (EstimationError names a bad row).

    ``timing``: ``"record"`` (an occasion's parameters from its first record's time on) or ``"nonmem"``
    (those of the record closing each interval, the module docstring).
    """
    if timing not in ("record", "nonmem"):
        raise EstimationError(f"iov.timing: must be 'record' or 'nonmem', got {timing!r}")
    if column not in dataset.frame.columns:
        raise EstimationError(f"iov.occasion: the dataset has no column {column!r} (columns: "
                              f"{list(dataset.frame.columns)})")
    values = dataset.frame[column].to_numpy(dtype=float)
    time_col = dataset.columns.get("TIME", "TIME")
    times = dataset.frame[time_col].to_numpy(dtype=float)
    per_subject, obs_occ, dose_occ, counts = [], [], [], []
    for s in dataset.subjects:
        rows = np.asarray(s.rows) - 1
        occ = values[rows]
        bad = np.flatnonzero(~np.isfinite(occ))
        if bad.size:
            raise EstimationError(f"row {rows[bad[0]] + 1}, column {column}: the occasion is missing (ID {s.id})")
        _, first = np.unique(occ, return_index=True)
        order = {v: k for k, v in enumerate(occ[np.sort(first)])}
        index = np.array([order[v] for v in occ], dtype=int)
        change = np.flatnonzero(np.r_[False, index[1:] != index[:-1]])
        if timing == "record":
            per_subject.append((times[rows][change], index[change]))
        else:
            before = times[rows][change - 1]
            close = np.flatnonzero(times[rows][change] - before <= 2 * NONMEM_CHANGE_OFFSET)
            if close.size:
                row = rows[change[close[0]]] + 1
                raise EstimationError(f"row {row}, column {column}: the occasion changes between two records at "
                                      f"the same time (ID {s.id}); iov.timing 'nonmem' cannot separate them")
            per_subject.append((before + NONMEM_CHANGE_OFFSET, index[change]))
        position = {int(r): k for k, r in enumerate(rows)}
        obs_occ.append(np.array([index[position[int(r) - 1]] for r in s.obs_row], dtype=int))
        dose_occ.append(np.array([index[position[int(r) - 1]] for r in s.dose_row], dtype=int))
        counts.append(len(order))
    change_times = np.unique(np.concatenate([t for t, _ in per_subject] + [np.zeros(0)]))
    active = np.zeros((len(per_subject), len(change_times)), dtype=int)
    for i, (t, k) in enumerate(per_subject):
        for c, tc in enumerate(change_times):
            last = np.flatnonzero(t <= tc)
            active[i, c] = k[last[-1]] if last.size else 0
    return Occasions(int(max(counts, default=1)), change_times, active, obs_occ, dose_occ, np.array(counts))


#: Largest relative difference (to the occasion's largest prediction) between a subject's full history and an
#: occasion predicted from its own doses alone, for :func:`occasion_parts` to split a subject by occasion.
CARRY_OVER_TOLERANCE = 1e-6


def occasion_parts(model, dataset, column: str, index: int, keep: np.ndarray, reference: np.ndarray,
                   occasions: Occasions | None = None) -> list:
    """Subject ``index`` split by occasion: ``[(occasion, regimen of its doses, observation mask)]``.

    For predictors that take one parameter set per patient (the JAX linear path of NUTS): each occasion
    is predicted from its own dose records only, which is exact when no drug is carried over from earlier
    occasions (washout, or a reset record EVID 3/4 opening the occasion).  That is checked with
    :func:`medtwin.core.simulate.simulate` at the parameters ``reference`` (one row, model units):
    EstimationError names the subject and occasion otherwise.  ``keep`` masks the fitted observations;
    ``occasions`` (of the whole dataset) saves recomputing them.
    """
    from medtwin.core.events import Regimen
    from medtwin.core.simulate import simulate

    occ = occasions if occasions is not None else subject_occasions(dataset, column)
    subject = dataset.subjects[index]
    obs_occ, dose_occ = occ.obs_occasion[index], occ.dose_occasion[index]
    events = subject.regimen.events
    parts = []
    for k in range(int(occ.count[index])):
        mask = keep & (obs_occ == k)
        if not mask.any():
            continue
        mine = [e for e, o in zip(events, dose_occ) if o == k]
        # alone, the occasion starts from the initial state: a reset opening it has nothing left to do
        mine = [replace(e, evid=1) if e.evid == 4 and j == 0 else e for j, e in enumerate(mine)
                if not (e.evid == 3 and j == 0)]
        own = Regimen(tuple(mine))
        times = np.asarray(subject.obs_times, float)[mask]
        pre = np.asarray(subject.pre_dose, bool)[mask]
        both = simulate(model, np.vstack([reference, reference]), [subject.regimen, own], [times, times],
                        pre_dose=[pre, pre], keep_states=False)
        full, alone = np.asarray(both.output(model.output_names[0]), float).reshape(2, -1)
        if np.max(np.abs(full - alone)) > CARRY_OVER_TOLERANCE * max(np.max(np.abs(full)), 1e-300):
            raise EstimationError(f"iov: occasion {k + 1} of ID {subject.id} depends on doses of earlier occasions "
                                  f"(drug carried over); fit_nuts predicts each occasion from its own doses — "
                                  f"open the occasion with a reset record (EVID 4) or use fit_focei")
        parts.append((k, own, mask))
    return parts
