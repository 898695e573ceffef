"""Gymnasium environments on virtual patients: ICU glucose and vancomycin, single and vectorised.

``medtwin/ICUGlucose-v0`` — ICU glycaemic control on the patients of
:mod:`medtwin.scenarios.glucose_patients` (the same set-up as
:mod:`medtwin.scenarios.glucose_loop`): a decision every hour, ``delay_h``
(20 min) after the blood sample whose result it sees; the action is an
insulin rate (U/h) from :data:`INSULIN_RATES` held for the hour; enteral feed
3.5 g/h.  Observation (float32): latest glucose result and the one before
(mmol/L, 5 % CV measurement error, 20 min old), running insulin rate (U/h),
elapsed fraction of the episode.  Reward per hour: time in 4.4–8.0 mmol/L
minus time below 4.0 (fractions of the hour, true glucose every 5 min);
``info["cost"]``: time below 4.0 (hypoglycaemia), ``info["unsafe"]``: any
true glucose below 4.0 in the hour.  A shield keeps every applied rate within
``max_change`` (2 U/h) of the running one: ``info["shielded"]`` marks the
decisions it changed.

``medtwin/Vancomycin-v0`` — vancomycin dosing on the patients of
:mod:`medtwin.scenarios.vanco_loop` (1-compartment truth, Matzke clearance):
a decision each day; the action is a dose from :data:`VANCO_DOSES_MG` given
every 12 h (infusion ``max(1, dose/1000)`` h, as the label policy).  Levels
from day 2 on: a trough just before the day's first dose (the harness draws it
0.5 h before) and a peak 1 h after its infusion, 10 % + 0.5 mg/L error,
reported 6 h later, so seen at the next decision; the observation holds the
latest reported trough and peak (mg/L), CrCl/100 (mL/min), weight/100 (kg),
yesterday's dose/1000 (mg) and the elapsed fraction.  Reward per day: 1 when
that day's AUC24 is in 400–600 mg·h/L; ``info["cost"]`` = 1 when AUC24 > 600
(nephrotoxic exposure).

The vector environments (:class:`GlucoseVectorEnv`, :class:`VancoVectorEnv`,
``gymnasium.make_vec(id, num_envs=n)``) step all patients at once on
:mod:`medtwin.rl.dynamics`; the single environments are the same code with one
patient.  All patients share one horizon, so they end together; the next
``step`` resets them (gymnasium's next-step autoreset).

Examples
--------
>>> import gymnasium
>>> env = gymnasium.make("medtwin/ICUGlucose-v0", hours=4)
>>> obs, info = env.reset(seed=0)
>>> obs.shape, int(env.action_space.n)
((4,), 8)
>>> obs, reward, terminated, truncated, info = env.step(3)   # 2 U/h
>>> 0.0 <= info["cost"] <= 1.0
True
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from medtwin.errors import DataError
from medtwin.rl.dynamics import GlucoseBatch, VancoBatch

__all__ = ["INSULIN_RATES", "VANCO_DOSES_MG", "GlucoseCore", "VancoCore", "GlucoseEnv", "VancoEnv",
           "GlucoseVectorEnv", "VancoVectorEnv", "make_env", "register_envs"]

#: Insulin infusion rates of the glucose environment's actions, U/h.
INSULIN_RATES = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
#: Doses (every 12 h) of the vancomycin environment's actions, mg.
VANCO_DOSES_MG = (250.0, 500.0, 750.0, 1000.0, 1250.0, 1500.0, 1750.0, 2000.0)


def shield_rate(requested, current, *, max_change: float = 2.0, bounds=(0.0, 10.0), levels=INSULIN_RATES):
    """The level nearest to ``requested`` within ``max_change`` of ``current`` and within ``bounds`` (U/h).

    Vectorised over patients; a level always exists when ``current`` is itself a level (it is its own
    neighbour).

    >>> shield_rate(np.array([8.0, 0.0]), np.array([1.0, 1.0])).tolist()
    [3.0, 0.0]
    """
    levels = np.asarray(levels, float)
    requested = np.asarray(requested, float)
    current = np.asarray(current, float)
    ok = (np.abs(levels[None, :] - current[:, None]) <= max_change + 1e-9) & (levels >= bounds[0]) \
        & (levels <= bounds[1])
    dist = np.where(ok, np.abs(levels[None, :] - requested[:, None]), np.inf)
    return levels[np.argmin(dist, axis=1)]


class GlucoseCore:
    """The batched glucose environment's state machine (n patients); see the module docstring."""

    obs_names = ("glucose_latest", "glucose_previous", "insulin_rate", "elapsed")

    def __init__(self, n: int, *, hours: int = 24, delay_h: float = 1.0 / 3.0, measurement_cv: float = 0.05,
                 max_change: float = 2.0, insulin_max: float = 10.0, enteral_g_per_h: float = 3.5,
                 target=(4.4, 8.0), hypo: float = 4.0, patients=None):
        if n < 1 or hours < 1 or not (0 <= delay_h < 1):
            raise DataError("glucose env: n >= 1, hours >= 1 and 0 <= delay_h < 1 needed")
        self.n, self.hours, self.delay_h = int(n), int(hours), float(delay_h)
        self.cv, self.max_change, self.insulin_max = measurement_cv, max_change, insulin_max
        self.feed, self.target, self.hypo = enteral_g_per_h, target, hypo
        self.fixed_patients = patients
        self.n_actions = len(INSULIN_RATES)

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        from medtwin.scenarios.glucose_patients import sample_icu_patients

        patients = self.fixed_patients or sample_icu_patients(self.n, hours=self.hours + 1,
                                                              seed=int(rng.integers(2**31)))
        self.batch = GlucoseBatch(patients, enteral_g_per_h=self.feed, substeps_per_h=24)
        self.rng = rng
        self.k = 0
        self.rate = np.zeros(self.n)
        self.latest = self._measure()
        self.previous = self.latest.copy()
        self.batch.advance(self.delay_h, self.rate)
        return self.obs()

    def _measure(self) -> np.ndarray:
        g = self.batch.glucose()
        return np.maximum(g * (1.0 + self.cv * self.rng.standard_normal(self.n)), 0.0)

    def obs(self) -> np.ndarray:
        return np.stack([self.latest, self.previous, self.rate, np.full(self.n, self.k / self.hours)],
                        axis=1).astype(np.float32)

    def step(self, action) -> tuple:
        action = np.asarray(action, dtype=int).reshape(self.n)
        requested = np.asarray(INSULIN_RATES)[action]
        applied = shield_rate(requested, self.rate, max_change=self.max_change, bounds=(0.0, self.insulin_max))
        shielded = applied != requested
        self.rate = applied
        first = self.batch.advance(1.0 - self.delay_h, applied)      # to the next sample time
        self.previous, self.latest = self.latest, self._measure()
        second = self.batch.advance(self.delay_h, applied)           # to the next decision
        grid = np.concatenate([first, second])
        tir = np.mean((grid >= self.target[0]) & (grid <= self.target[1]), axis=0)
        below = np.mean(grid < self.hypo, axis=0)
        self.k += 1
        done = np.full(self.n, self.k >= self.hours)
        info = {"cost": below, "unsafe": np.any(grid < self.hypo, axis=0), "shielded": shielded,
                "applied_action": np.searchsorted(INSULIN_RATES, applied), "glucose_true": grid[-1],
                "time_in_range": tir}
        return self.obs(), tir - below, np.zeros(self.n, bool), done, info


class VancoCore:
    """The batched vancomycin environment's state machine (n patients); see the module docstring."""

    obs_names = ("trough", "peak", "crcl", "weight", "dose", "elapsed")

    def __init__(self, n: int, *, days: int = 5, level_delay_h: float = 6.0, proportional_error: float = 0.10,
                 additive_error: float = 0.5, target=(400.0, 600.0), patients=None):
        if n < 1 or days < 1:
            raise DataError("vancomycin env: n >= 1 and days >= 1 needed")
        self.n, self.days, self.delay = int(n), int(days), float(level_delay_h)
        self.prop, self.add, self.target = proportional_error, additive_error, target
        self.fixed_patients = patients
        self.n_actions = len(VANCO_DOSES_MG)

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        from medtwin.scenarios.vanco_loop import sample_vanco_patients

        patients = self.fixed_patients or sample_vanco_patients(self.n, seed=int(rng.integers(2**31)))
        self.batch = VancoBatch(patients)
        self.crcl = np.array([p.crcl for p in patients])
        self.weight = np.array([p.weight for p in patients])
        self.rng = rng
        self.d = 0
        self.dose = np.zeros(self.n)
        self.trough = np.zeros(self.n)
        self.peak = np.zeros(self.n)
        return self.obs()

    def _noisy(self, c) -> np.ndarray:
        return np.maximum(c * (1 + self.prop * self.rng.standard_normal(self.n))
                          + self.add * self.rng.standard_normal(self.n), 0.0)

    def obs(self) -> np.ndarray:
        return np.stack([self.trough, self.peak, self.crcl / 100.0, self.weight / 100.0, self.dose / 1000.0,
                         np.full(self.n, self.d / self.days)], axis=1).astype(np.float32)

    def step(self, action) -> tuple:
        action = np.asarray(action, dtype=int).reshape(self.n)
        dose = np.asarray(VANCO_DOSES_MG)[action]
        duration = np.maximum(1.0, dose / 1000.0)
        # from day 1 on (as the harness): a trough just before the day's first dose and a peak 1 h after its
        # infusion, reported level_delay_h later, i.e. seen at the next decision
        trough_new = self._noisy(self.batch.concentration())
        auc = self._dose_interval(dose, duration)
        peak_new = self._noisy(self.peak_conc)
        auc += self._dose_interval(dose, duration)
        if self.d > 0:
            self.trough, self.peak = trough_new, peak_new
        self.dose = dose
        self.d += 1
        in_target = (auc >= self.target[0]) & (auc <= self.target[1])
        done = np.full(self.n, self.d >= self.days)
        info = {"cost": (auc > self.target[1]).astype(float), "unsafe": auc > self.target[1], "auc24": auc,
                "shielded": np.zeros(self.n, bool), "applied_action": action}
        return self.obs(), in_target.astype(float), np.zeros(self.n, bool), done, info

    def _dose_interval(self, dose, duration) -> np.ndarray:
        """One 12-h dosing interval per patient (infusion ``duration``, then nothing); the AUC, mg·h/L.

        Also records ``peak_conc``: the true concentration 1 h after the infusion ends.
        """
        rate = dose / duration
        b = self.batch
        k, cl = b.k, b.cl
        e1 = np.exp(-k * duration)
        a_end = b.a * e1 + rate / k * (1 - e1)
        auc = (b.a + dose - a_end) / cl
        e2 = np.exp(-k * (12.0 - duration))
        a12 = a_end * e2
        auc += (a_end - a12) / cl
        self.peak_conc = a_end * np.exp(-k * 1.0) / b.v
        b.a = a12
        b.t += 12.0
        return auc


def _box(n_obs):
    return spaces.Box(low=0.0, high=np.inf, shape=(n_obs,), dtype=np.float32)


class _SingleEnv(gymnasium.Env):
    metadata = {"render_modes": []}
    core_class = None

    def __init__(self, **options):
        self.core = self.core_class(1, **options)
        self.observation_space = _box(len(self.core.obs_names))
        self.action_space = spaces.Discrete(self.core.n_actions)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.core.reset(self.np_random)[0], {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise DataError(f"{type(self).__name__}: action {action!r} is not in {self.action_space}")
        obs, reward, term, trunc, info = self.core.step(np.array([action]))
        return obs[0], float(reward[0]), bool(term[0]), bool(trunc[0]), {k: v[0].item() for k, v in info.items()}


class GlucoseEnv(_SingleEnv):
    """One ICU patient under glycaemic control (``medtwin/ICUGlucose-v0``); options of :class:`GlucoseCore`."""

    core_class = GlucoseCore


class VancoEnv(_SingleEnv):
    """One patient on vancomycin (``medtwin/Vancomycin-v0``); options of :class:`VancoCore`."""

    core_class = VancoCore


class _VectorEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
    core_class = None

    def __init__(self, num_envs: int = 1, **options):
        self.core = self.core_class(num_envs, **options)
        self.num_envs = int(num_envs)
        self.single_observation_space = _box(len(self.core.obs_names))
        self.single_action_space = spaces.Discrete(self.core.n_actions)
        self.observation_space = gymnasium.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gymnasium.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._needs_reset = False

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(seed)
        self._needs_reset = False
        return self.core.reset(self.np_random), {}

    def step(self, actions):
        if self._needs_reset:
            self._needs_reset = False
            n = self.num_envs
            return (self.core.reset(self.np_random), np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), {})
        obs, reward, term, trunc, info = self.core.step(actions)
        self._needs_reset = bool(np.all(term | trunc))
        return obs, reward, term, trunc, info


class GlucoseVectorEnv(_VectorEnv):
    """``num_envs`` ICU patients stepped at once (``gymnasium.make_vec("medtwin/ICUGlucose-v0", n)``)."""

    core_class = GlucoseCore


class VancoVectorEnv(_VectorEnv):
    """``num_envs`` vancomycin patients stepped at once (``gymnasium.make_vec("medtwin/Vancomycin-v0", n)``)."""

    core_class = VancoCore


_KINDS = {"glucose": (GlucoseEnv, GlucoseVectorEnv), "vancomycin": (VancoEnv, VancoVectorEnv)}


def make_env(kind_or_patients, *, num_envs: int | None = None, **options):
    """A glucose or vancomycin environment, single (``num_envs=None``) or vectorised.

    ``kind_or_patients``: ``"glucose"``/``"vancomycin"``, or a list of virtual patients
    (``SyntheticICUPatient`` or ``VancoPatient``): the environment then steps exactly those patients
    (``num_envs`` = their number) at every reset.
    """
    if isinstance(kind_or_patients, str):
        if kind_or_patients not in _KINDS:
            raise DataError(f"make_env: kind must be one of {sorted(_KINDS)}, not {kind_or_patients!r}")
        single, vector = _KINDS[kind_or_patients]
        return single(**options) if num_envs is None else vector(num_envs, **options)
    patients = list(kind_or_patients)
    if not patients:
        raise DataError("make_env: no patients")
    kind = "glucose" if hasattr(patients[0], "si_multipliers") else "vancomycin"
    if kind == "vancomycin" and not hasattr(patients[0], "cl"):
        raise DataError(f"make_env: {type(patients[0]).__name__} is not a virtual patient of a shipped scenario")
    return _KINDS[kind][1](len(patients), patients=patients, **options)


def register_envs() -> None:
    """Register ``medtwin/ICUGlucose-v0`` and ``medtwin/Vancomycin-v0`` with gymnasium (idempotent)."""
    for env_id, (single, vector) in (("medtwin/ICUGlucose-v0", (GlucoseEnv, GlucoseVectorEnv)),
                                     ("medtwin/Vancomycin-v0", (VancoEnv, VancoVectorEnv))):
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point=f"{single.__module__}:{single.__name__}",
                               vector_entry_point=f"{vector.__module__}:{vector.__name__}")


register_envs()
