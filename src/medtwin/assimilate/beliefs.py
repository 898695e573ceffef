"""Beliefs: what an observer knows about z = [states, log parameters] at one time.

Beliefs are plain immutable values.  They can be stored (``to_dict`` gives
JSON-ready lists; Python writes floats with the shortest repr that reads back
to the same double, so a round trip is exact) and restored, which is what the
twin's checkpoints, save/load and bit-identical replays rely on.

Examples
--------
>>> import numpy as np
>>> b = GaussianBelief(time=1.5, mean=np.array([1.0, 2.0]), cov=np.eye(2), names=("a", "b"))
>>> belief_from_dict(b.to_dict()).mean.tolist()
[1.0, 2.0]
>>> round(float(b.sd[1]), 3)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medtwin.core.status import Vocabulary
from medtwin.errors import DataError


class UpdateStatus(Vocabulary):
    """Outcome of an observer's predict or update step (and of each entry of a twin's history)."""

    OK = "ok"
    #: the step produced a non-finite or non-positive-definite belief; the belief before it is kept
    FAILED = "numerical-failure"
    #: the step was not run
    SKIPPED = "skipped"


#: Update / predict statuses (the members of :class:`UpdateStatus`).
OK, FAILED, SKIPPED = UpdateStatus.OK, UpdateStatus.FAILED, UpdateStatus.SKIPPED


def _frozen(array) -> np.ndarray:
    out = np.array(array, dtype=float)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class GaussianBelief:
    """A Gaussian belief N(mean, cov) over z at ``time`` h (EKF, UKF).

    Attributes
    ----------
    time : float
        Hours since the stream's origin.
    mean : ndarray, shape (n,)
    cov : ndarray, shape (n, n)
    names : tuple of str
        Names of the entries of z (states, then ``log <parameter>``).
    healthy : bool
        False once a numerical failure has made the belief unusable.
    """

    time: float
    mean: np.ndarray
    cov: np.ndarray
    names: tuple[str, ...]
    healthy: bool = True

    kind = "gaussian"

    def __post_init__(self):
        object.__setattr__(self, "mean", _frozen(self.mean))
        object.__setattr__(self, "cov", _frozen(self.cov))
        object.__setattr__(self, "time", float(self.time))
        n = len(self.names)
        if self.mean.shape != (n,) or self.cov.shape != (n, n):
            raise DataError(f"belief: mean {self.mean.shape} and cov {self.cov.shape} do not match {n} names")

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of z, shape (n, len(names))."""
        return rng.multivariate_normal(self.mean, self.cov, size=n, method="eigh")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "time": self.time, "names": list(self.names), "mean": self.mean.tolist(),
                "cov": self.cov.tolist(), "healthy": self.healthy}


@dataclass(frozen=True, eq=False)
class ParticleBelief:
    """A weighted particle cloud over z at ``time`` h (particle filter).

    Attributes
    ----------
    particles : ndarray, shape (N, n)
    log_weights : ndarray, shape (N,)
        Normalised log weights (log-sum-exp = 0).
    seed, counter : int
        The random stream: the k-th random draw of a filter run uses
        ``numpy.random.default_rng([seed, counter])``; keeping both in the belief
        makes a replay from a stored belief bit-identical.
    """

    time: float
    particles: np.ndarray
    log_weights: np.ndarray
    names: tuple[str, ...]
    seed: int = 0
    counter: int = 0
    healthy: bool = True

    kind = "particles"

    def __post_init__(self):
        object.__setattr__(self, "particles", _frozen(self.particles))
        object.__setattr__(self, "log_weights", _frozen(self.log_weights))
        object.__setattr__(self, "time", float(self.time))
        if self.particles.ndim != 2 or self.particles.shape[1] != len(self.names):
            raise DataError(f"belief: particles {self.particles.shape} do not match {len(self.names)} names")
        if self.log_weights.shape != (len(self.particles),):
            raise DataError("belief: one log weight per particle is needed")

    @property
    def weights(self) -> np.ndarray:
        return np.exp(self.log_weights)

    @property
    def mean(self) -> np.ndarray:
        return self.weights @ self.particles

    @property
    def cov(self) -> np.ndarray:
        d = self.particles - self.mean
        return (self.weights[:, None] * d).T @ d

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    @property
    def ess(self) -> float:
        """Effective sample size 1 / Σ w²."""
        return float(1.0 / np.sum(self.weights**2))

    def rng(self) -> tuple[np.random.Generator, int]:
        """The generator for the next random draw, and the counter to store after it."""
        return np.random.default_rng([int(self.seed), int(self.counter)]), int(self.counter) + 1

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of z from the weighted cloud, shape (n, len(names))."""
        return self.particles[rng.choice(len(self.particles), size=n, p=self.weights / self.weights.sum())]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "time": self.time, "names": list(self.names),
                "particles": self.particles.tolist(), "log_weights": self.log_weights.tolist(),
                "seed": self.seed, "counter": self.counter, "healthy": self.healthy}


Belief = GaussianBelief | ParticleBelief


def belief_from_dict(data: dict) -> Belief:
    """Restore a belief written by ``to_dict`` (raises DataError naming the missing field)."""
    try:
        kind = data["kind"]
        common = dict(time=data["time"], names=tuple(data["names"]), healthy=bool(data.get("healthy", True)))
        if kind == GaussianBelief.kind:
            return GaussianBelief(mean=np.asarray(data["mean"], float), cov=np.asarray(data["cov"], float), **common)
        if kind == ParticleBelief.kind:
            return ParticleBelief(particles=np.asarray(data["particles"], float),
                                  log_weights=np.asarray(data["log_weights"], float), seed=int(data["seed"]),
                                  counter=int(data["counter"]), **common)
    except KeyError as exc:
        raise DataError(f"stored belief: field {exc.args[0]!r} is missing") from None
    raise DataError(f"stored belief: unknown kind {kind!r} (expected 'gaussian' or 'particles')")


@dataclass(frozen=True)
class Innovation:
    """What one measurement told the observer.

    Attributes
    ----------
    time : float
        Hours.
    output : str
        Model output measured.
    value : float
        The measurement (output unit).
    predicted : float
        Predicted mean of the measurement before the update (output unit).
    variance : float
        Predicted variance of the measurement, residual error included ((output unit)²).
    loglik : float
        log p(value | data so far) under the observer's predictive distribution.
    """

    time: float
    output: str
    value: float
    predicted: float
    variance: float
    loglik: float

    @property
    def standardized(self) -> float:
        """(value − predicted) / √variance: N(0, 1) when the model is right."""
        return float((self.value - self.predicted) / np.sqrt(self.variance)) if self.variance > 0 else float("nan")

    @property
    def nis(self) -> float:
        """Normalised innovation squared: χ²(1) when the model is right."""
        return self.standardized**2
