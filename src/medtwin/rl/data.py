"""Logged decision data for offline RL and off-policy evaluation: one table of transitions, Parquet on disk.

An :class:`Episodes` value is a table of transitions sorted by (episode, step)::

    column        type                 unit / meaning
    ------------  -------------------  ------------------------------------------------------------
    episode       int64                episode (patient stay) id
    step          int64                decision index within the episode, 0, 1, ...
    obs_<name>    float64, one each    the observation the decision was taken on (env units)
    action        int64                index of the action taken (discrete action set)
    reward        float64              reward received after the action
    next_obs_<n>  float64, one each    the next observation
    terminated    bool                 the episode ended in a terminal state after this decision
    truncated     bool                 the episode was cut (time limit) after this decision
    propensity    float64              behaviour probability of the action taken, NaN when unknown
    cost          float64              safety cost of the transition (e.g. 1 = hypoglycaemia), 0 if none

:meth:`Episodes.to_parquet` writes it with pyarrow, the schema's metadata
carrying ``medtwin.rl.format`` = ``"episodes/1"``, ``n_actions``, the
observation names and free-text metadata (the behaviour policy, the
environment id, the seed); :meth:`Episodes.from_parquet` reads it back.  The
flat table is what d3rlpy and pandas take in; :meth:`Episodes.to_minari_buffers` gives the per-episode
buffers of Minari's ``create_dataset_from_buffers`` (observations T + 1, actions, rewards, terminations,
truncations, infos with the propensity and the cost) and :meth:`Episodes.from_minari_buffers` reads them back.

Examples
--------
>>> import numpy as np
>>> e = Episodes(episode=np.array([0, 0, 1]), step=np.array([0, 1, 0]), obs=np.array([[0.], [1.], [0.]]),
...              action=np.array([1, 0, 1]), reward=np.array([0., 1., 0.]), next_obs=np.array([[1.], [2.], [2.]]),
...              terminated=np.array([False, True, True]), truncated=np.array([False, False, False]),
...              propensity=np.array([0.5, 0.5, 0.5]), n_actions=2)
>>> e.n_episodes, e.returns().tolist()
(2, [1.0, 0.0])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np

from medtwin.errors import DataError

__all__ = ["Episodes", "FORMAT"]

FORMAT = "episodes/1"


@dataclass(frozen=True, eq=False)
class Episodes:
    """Logged transitions (see the module docstring for the columns); arrays of length n, obs of shape (n, d)."""

    episode: np.ndarray
    step: np.ndarray
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    propensity: np.ndarray
    n_actions: int
    cost: np.ndarray | None = None
    obs_names: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.episode)
        obs = np.asarray(self.obs, dtype=float)
        if obs.ndim != 2 or obs.shape[0] != n or np.shape(self.next_obs) != obs.shape:
            raise DataError(f"episodes: obs and next_obs must be (n, d) with n = {n}")
        for name in ("step", "action", "reward", "terminated", "truncated", "propensity"):
            if len(getattr(self, name)) != n:
                raise DataError(f"episodes: column {name} has {len(getattr(self, name))} rows, not {n}")
        a = np.asarray(self.action)
        if n and (a.min() < 0 or a.max() >= self.n_actions):
            raise DataError(f"episodes: actions must be in 0..{self.n_actions - 1}")
        order = np.lexsort((self.step, self.episode))
        if np.any(order != np.arange(n)):
            raise DataError("episodes: rows must be sorted by (episode, step)")
        object.__setattr__(self, "obs", obs)
        object.__setattr__(self, "next_obs", np.asarray(self.next_obs, dtype=float))
        if self.cost is None:
            object.__setattr__(self, "cost", np.zeros(n))
        if not self.obs_names:
            object.__setattr__(self, "obs_names", tuple(f"x{j}" for j in range(obs.shape[1])))
        if len(self.obs_names) != obs.shape[1]:
            raise DataError("episodes: one observation name per column needed")

    def __len__(self) -> int:
        return len(self.episode)

    @property
    def episode_ids(self) -> np.ndarray:
        return np.unique(self.episode)

    @property
    def n_episodes(self) -> int:
        return int(len(self.episode_ids))

    def returns(self, gamma: float = 1.0) -> np.ndarray:
        """Discounted return of each episode (in episode-id order), shape (n_episodes,)."""
        _, index = np.unique(self.episode, return_inverse=True)
        return np.bincount(index, weights=np.asarray(self.reward) * gamma ** np.asarray(self.step, float))

    def subset(self, episodes) -> "Episodes":
        """The transitions of the given episode ids (in the given order, renumbered 0..k-1; repeats allowed)."""
        ids = np.asarray(episodes)
        starts = np.searchsorted(self.episode, ids, side="left")
        ends = np.searchsorted(self.episode, ids, side="right")
        rows = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(ids) else np.arange(0)
        new_ids = np.repeat(np.arange(len(ids)), ends - starts)
        cols = {k: np.asarray(getattr(self, k))[rows] for k in ("step", "obs", "action", "reward", "next_obs",
                                                                 "terminated", "truncated", "propensity", "cost")}
        return replace(self, episode=new_ids, **cols)

    def split(self, fraction: float, *, seed: int = 0) -> tuple["Episodes", "Episodes"]:
        """Random split of the episodes into (fraction, 1 - fraction) parts."""
        ids = np.random.default_rng(seed).permutation(self.episode_ids)
        k = int(round(fraction * len(ids)))
        if not 0 < k < len(ids):
            raise DataError(f"episodes: split fraction {fraction} leaves one part empty")
        return self.subset(np.sort(ids[:k])), self.subset(np.sort(ids[k:]))

    def padded(self) -> dict:
        """Episode-major arrays of shape (N, T) (obs (N, T, d)) with a ``mask``; T the longest episode."""
        ids, index = np.unique(self.episode, return_inverse=True)
        T = int(np.max(self.step)) + 1
        N = len(ids)
        out = {"mask": np.zeros((N, T), bool)}
        out["mask"][index, self.step] = True
        for name, fill in (("action", 0), ("reward", 0.0), ("propensity", 1.0), ("cost", 0.0)):
            arr = np.full((N, T), fill, dtype=np.asarray(getattr(self, name)).dtype)
            arr[index, self.step] = getattr(self, name)
            out[name] = arr
        for name in ("obs", "next_obs"):
            arr = np.zeros((N, T, self.obs.shape[1]))
            arr[index, self.step] = getattr(self, name)
            out[name] = arr
        done = np.zeros((N, T), bool)
        done[index, self.step] = self.terminated
        out["terminated"] = done
        return out

    def to_frame(self):
        """The table as a pandas DataFrame (columns of the module docstring)."""
        import pandas as pd

        cols = {"episode": np.asarray(self.episode, np.int64), "step": np.asarray(self.step, np.int64)}
        for j, name in enumerate(self.obs_names):
            cols[f"obs_{name}"] = self.obs[:, j]
        cols["action"] = np.asarray(self.action, np.int64)
        cols["reward"] = np.asarray(self.reward, float)
        for j, name in enumerate(self.obs_names):
            cols[f"next_obs_{name}"] = self.next_obs[:, j]
        cols.update(terminated=np.asarray(self.terminated, bool), truncated=np.asarray(self.truncated, bool),
                    propensity=np.asarray(self.propensity, float), cost=np.asarray(self.cost, float))
        return pd.DataFrame(cols)

    def to_minari_buffers(self) -> list[dict]:
        """The episodes as Minari episode buffers (``minari.create_dataset_from_buffers(id, buffer, ...)``).

        One dict per episode (episode-id order) with ``observations`` (T + 1, d) float32: the T decision
        observations and the last next observation; ``actions`` (T,) int64; ``rewards`` (T,) float64;
        ``terminations``, ``truncations`` (T,) bool; ``infos``: ``propensity`` and ``cost`` of length T + 1 as
        Minari's stacked infos (entry 0 is the reset's: NaN and 0; entry t + 1 belongs to decision t).
        Consecutive rows of an episode must chain (next_obs of step t = obs of step t + 1, the logged
        trajectories do); DataError otherwise.  Needs no ``minari`` installed.
        """
        ids, starts = np.unique(self.episode, return_index=True)
        ends = np.append(starts[1:], len(self))
        out = []
        for s, e in zip(starts, ends):
            if not np.array_equal(self.obs[s + 1:e], self.next_obs[s:e - 1]):
                raise DataError(f"episodes: episode {self.episode[s]} does not chain next_obs to obs")
            out.append({"observations": np.vstack([self.obs[s:e], self.next_obs[e - 1:e]]).astype(np.float32),
                        "actions": np.asarray(self.action[s:e], np.int64),
                        "rewards": np.asarray(self.reward[s:e], float),
                        "terminations": np.asarray(self.terminated[s:e], bool),
                        "truncations": np.asarray(self.truncated[s:e], bool),
                        "infos": {"propensity": np.concatenate([[np.nan], self.propensity[s:e]]),
                                  "cost": np.concatenate([[0.0], self.cost[s:e]])}})
        return out

    @classmethod
    def from_minari_buffers(cls, buffers, *, n_actions: int, obs_names: tuple[str, ...] = (),
                            metadata: Mapping[str, str] | None = None) -> "Episodes":
        """The inverse of :meth:`to_minari_buffers` (also reads ``minari`` EpisodeData-like dicts; propensity
        NaN and cost 0 where their infos lack them)."""
        cols = {k: [] for k in ("episode", "step", "obs", "action", "reward", "next_obs", "terminated",
                                "truncated", "propensity", "cost")}
        for i, b in enumerate(buffers):
            o = np.asarray(b["observations"], float)
            T = len(b["actions"])
            if o.shape[0] != T + 1:
                raise DataError(f"minari buffer {i}: {o.shape[0]} observations for {T} actions (T + 1 needed)")
            infos = b.get("infos") or {}
            cols["episode"].append(np.full(T, i))
            cols["step"].append(np.arange(T))
            cols["obs"].append(o[:-1])
            cols["next_obs"].append(o[1:])
            for key, name in (("action", "actions"), ("reward", "rewards"), ("terminated", "terminations"),
                              ("truncated", "truncations")):
                cols[key].append(np.asarray(b[name]).reshape(T))
            cols["propensity"].append(np.asarray(infos.get("propensity", np.full(T + 1, np.nan)), float)[1:])
            cols["cost"].append(np.asarray(infos.get("cost", np.zeros(T + 1)), float)[1:])
        if not cols["episode"]:
            raise DataError("from_minari_buffers: no episodes")
        joined = {k: np.concatenate(v) for k, v in cols.items()}
        return cls(**joined, n_actions=n_actions, obs_names=tuple(obs_names), metadata=dict(metadata or {}))

    def to_parquet(self, path) -> None:
        """Write the table to ``path`` (Parquet, pyarrow) with the format, action count and names in its metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(self.to_frame(), preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"medtwin.rl"] = json.dumps({"format": FORMAT, "n_actions": int(self.n_actions),
                                           "obs_names": list(self.obs_names),
                                           "metadata": dict(self.metadata)}).encode()
        pq.write_table(table.replace_schema_metadata(meta), str(path))

    @classmethod
    def from_parquet(cls, path) -> "Episodes":
        """Read a table written by :meth:`to_parquet`; DataError when it is not one."""
        import pyarrow.parquet as pq

        table = pq.read_table(str(path))
        raw = (table.schema.metadata or {}).get(b"medtwin.rl")
        if raw is None:
            raise DataError(f"{path}: not a medtwin episodes table (no medtwin.rl schema metadata)")
        meta = json.loads(raw)
        if meta.get("format") != FORMAT:
            raise DataError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        frame = table.to_pandas()
        names = tuple(meta["obs_names"])
        return cls(episode=frame["episode"].to_numpy(), step=frame["step"].to_numpy(),
                   obs=frame[[f"obs_{n}" for n in names]].to_numpy(float), action=frame["action"].to_numpy(),
                   reward=frame["reward"].to_numpy(float),
                   next_obs=frame[[f"next_obs_{n}" for n in names]].to_numpy(float),
                   terminated=frame["terminated"].to_numpy(bool), truncated=frame["truncated"].to_numpy(bool),
                   propensity=frame["propensity"].to_numpy(float), n_actions=int(meta["n_actions"]),
                   cost=frame["cost"].to_numpy(float), obs_names=names, metadata=meta.get("metadata", {}))
