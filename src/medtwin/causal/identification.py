"""Identification by covariate adjustment: backdoor sets, minimal sets, the optimal O-set, and refusals.

All functions take an :class:`~medtwin.causal.scm.SCM` or a :class:`networkx.DiGraph` (optionally with a
boolean node attribute ``latent``: unobserved variables, never adjusted for) and use networkx for the
graph algorithms (descendants, d-separation via :func:`networkx.is_d_separator`).

* :func:`is_backdoor_set` — Pearl's backdoor criterion: Z has no descendant of X and d-separates X and Y in
  the graph without X's outgoing edges.
* :func:`check_adjustment` — the mechanical refusal: raises :class:`~medtwin.errors.AdjustmentError` naming
  the offending variable and the path when Z holds a descendant of the treatment (mediator or other
  post-treatment variable), an unobserved variable, a collider that opens a non-causal path, or leaves a
  backdoor path open.
* :func:`minimal_adjustment_sets` — every valid backdoor set none of whose proper subsets is valid.
* :func:`optimal_adjustment_set` — O = pa(cn(X, Y)) \\ forb(X, Y) (Henckel, Perković & Maathuis 2022, JRSS-B
  84:579), the valid set giving the smallest asymptotic variance among adjustment estimators in linear
  models; cn are the nodes on causal paths X → … → Y (X excluded) and forb = de(cn) ∪ {X}.

Examples
--------
>>> import networkx as nx
>>> g = nx.DiGraph([("age", "smoke"), ("age", "y"), ("smoke", "tar"), ("tar", "y")])
>>> sorted(optimal_adjustment_set(g, "smoke", "y")), [sorted(s) for s in minimal_adjustment_sets(g, "smoke", "y")]
(['age'], [['age']])
>>> try:
...     check_adjustment(g, "smoke", "y", {"age", "tar"})
... except AdjustmentError as exc:
...     print(exc)   # doctest: +NORMALIZE_WHITESPACE
cannot adjust for tar: it is a descendant of the treatment smoke (path smoke -> tar), a mediator on the
causal path to y; conditioning on it removes part of the effect and can open non-causal paths
"""

from __future__ import annotations

from itertools import combinations
from typing import Iterable

import networkx as nx

from medtwin.errors import AdjustmentError, ModelError

__all__ = ["AdjustmentError", "causal_graph", "is_backdoor_set", "check_adjustment", "open_backdoor_path",
           "minimal_adjustment_sets", "optimal_adjustment_set", "format_path"]

#: Largest number of candidate variables :func:`minimal_adjustment_sets` enumerates subsets of.
MAX_CANDIDATES = 18


def causal_graph(model) -> tuple[nx.DiGraph, frozenset[str]]:
    """The DAG and its latent variables from an SCM or a DiGraph (``latent`` node attribute)."""
    graph = model if isinstance(model, nx.DiGraph) else getattr(model, "graph", None)
    if not isinstance(graph, nx.DiGraph):
        raise ModelError(f"expected an SCM or a networkx DiGraph, got {type(model).__name__}")
    if not nx.is_directed_acyclic_graph(graph):
        raise ModelError("the causal graph must be acyclic")
    latent = frozenset(n for n, d in graph.nodes(data=True) if d.get("latent"))
    return graph, latent


def _names(graph: nx.DiGraph, *groups) -> None:
    for group in groups:
        for n in group:
            if n not in graph:
                raise ModelError(f"the causal graph has no variable {n!r}; variables: {sorted(map(str, graph))}")


def _set(z) -> frozenset[str]:
    if z is None:
        return frozenset()
    return frozenset({z}) if isinstance(z, str) else frozenset(z)


def format_path(graph: nx.DiGraph, path: list[str]) -> str:
    """``a <- b -> c`` with the edge directions of ``graph``."""
    out = [str(path[0])]
    for a, b in zip(path, path[1:]):
        out.append(("-> " if graph.has_edge(a, b) else "<- ") + str(b))
    return " ".join(out)


def _backdoor_graph(graph: nx.DiGraph, x: str) -> nx.DiGraph:
    g = nx.DiGraph(graph)
    g.remove_edges_from(list(graph.out_edges(x)))
    return g


def is_backdoor_set(model, x: str, y: str, z: Iterable[str] = ()) -> bool:
    """Whether ``z`` satisfies the backdoor criterion for the effect of ``x`` on ``y`` (observed vars only).

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.DiGraph([("c", "x"), ("c", "y"), ("x", "y")])
    >>> is_backdoor_set(g, "x", "y", {"c"}), is_backdoor_set(g, "x", "y", set())
    (True, False)
    """
    graph, latent = causal_graph(model)
    z = _set(z)
    _names(graph, {x, y}, z)
    if x in z or y in z or z & latent or z & nx.descendants(graph, x):
        return False
    return bool(nx.is_d_separator(_backdoor_graph(graph, x), {x}, {y}, set(z)))


def _is_open(graph: nx.DiGraph, path: list[str], z: frozenset[str]) -> tuple[bool, str | None]:
    """Whether ``path`` is d-connecting given ``z``; also the collider on it that z opens (if any)."""
    opened = None
    for prev, node, nxt in zip(path, path[1:], path[2:]):
        collider = graph.has_edge(prev, node) and graph.has_edge(nxt, node)
        if collider:
            if node in z:
                opened = opened or node
            else:
                hit = nx.descendants(graph, node) & z
                if not hit:
                    return False, None
                opened = opened or sorted(hit)[0]
        elif node in z:
            return False, None
    return True, opened


def open_backdoor_path(model, x: str, y: str, z: Iterable[str] = ()) -> tuple[list[str], str | None] | None:
    """A backdoor path from ``x`` to ``y`` left open by ``z``, and the conditioned collider that opens it.

    Returns ``None`` when every backdoor path is blocked; else ``(path, collider)`` with ``collider`` the
    variable in ``z`` (a collider on the path, or a descendant of one) whose conditioning opens the path,
    or ``None`` when the path is open without any conditioning.
    """
    graph, _ = causal_graph(model)
    z = _set(z)
    _names(graph, {x, y}, z)
    skeleton = graph.to_undirected(as_view=True)
    best = None
    for first in sorted(graph.predecessors(x)):
        if first == y:
            return [x, y], None
        for tail in nx.all_simple_paths(skeleton, first, y):
            if x in tail:
                continue
            path = [x, *tail]
            is_open, collider = _is_open(graph, path, z)
            # prefer a path opened by conditioning (to name the collider), then the shortest
            if is_open and (best is None or (collider is None, len(path)) < (best[1] is None, len(best[0]))):
                best = (path, collider)
    return best


def check_adjustment(model, x: str, y: str, z: Iterable[str] = ()) -> frozenset[str]:
    """Return ``z`` when it is a valid backdoor adjustment set; otherwise refuse with the reason and the path.

    Raises
    ------
    AdjustmentError
        ``z`` holds the treatment or outcome, an unobserved variable, a descendant of the treatment (path
        named), a collider whose conditioning opens a non-causal path (collider and path named), or leaves a
        backdoor path open (path named).
    """
    graph, latent = causal_graph(model)
    z = _set(z)
    _names(graph, {x, y}, z)
    if x == y:
        raise ModelError(f"treatment and outcome must differ, both are {x!r}")
    for v in sorted(z & {x, y}):
        raise AdjustmentError(f"cannot adjust for {v}: it is the {'treatment' if v == x else 'outcome'}")
    for v in sorted(z & latent):
        raise AdjustmentError(f"cannot adjust for {v}: it is unobserved (latent) in the causal graph")
    descendants = nx.descendants(graph, x)
    ancestors_y = nx.ancestors(graph, y)
    for v in sorted(z & descendants):
        path = format_path(graph, nx.shortest_path(graph, x, v))
        role = (f"a mediator on the causal path to {y}" if v in ancestors_y else
                f"a common effect of {x} and {y} (collider)" if v in nx.descendants(graph, y) else
                "a post-treatment variable")
        raise AdjustmentError(f"cannot adjust for {v}: it is a descendant of the treatment {x} (path {path}), "
                              f"{role}; conditioning on it removes part of the effect and can open non-causal "
                              "paths")
    if nx.is_d_separator(_backdoor_graph(graph, x), {x}, {y}, set(z)):
        return z
    found = open_backdoor_path(graph, x, y, z)
    path, collider = found if found else ([x, y], None)
    text = format_path(graph, path)
    if collider is not None:
        raise AdjustmentError(f"cannot adjust for {collider}: conditioning on this collider opens the non-causal "
                              f"path {text} between {x} and {y}")
    raise AdjustmentError(f"adjustment set {sorted(z)} leaves the backdoor path {text} open (confounding "
                          f"between {x} and {y}); add an observed variable on it")


def minimal_adjustment_sets(model, x: str, y: str, *, max_candidates: int = MAX_CANDIDATES) -> list[frozenset[str]]:
    """Every minimal valid backdoor set (no proper subset valid), smallest first; [] when none exists.

    Candidates are the observed non-descendants of ``x`` among the ancestors of {x, y} (every minimal set
    lies there); subsets are enumerated by size, so ``max_candidates`` bounds the work (2^k subsets).
    """
    graph, latent = causal_graph(model)
    _names(graph, {x, y})
    candidates = sorted((nx.ancestors(graph, x) | nx.ancestors(graph, y)) - nx.descendants(graph, x)
                        - latent - {x, y})
    if len(candidates) > max_candidates:
        raise ModelError(f"minimal_adjustment_sets: {len(candidates)} candidate variables (> {max_candidates}); "
                         "use optimal_adjustment_set or raise max_candidates")
    backdoor = _backdoor_graph(graph, x)
    found: list[frozenset[str]] = []
    for size in range(len(candidates) + 1):
        for subset in combinations(candidates, size):
            s = frozenset(subset)
            if any(f <= s for f in found):
                continue
            if nx.is_d_separator(backdoor, {x}, {y}, set(s)):
                found.append(s)
    return found


def optimal_adjustment_set(model, x: str, y: str) -> frozenset[str]:
    """The optimal adjustment set O = pa(cn(X,Y)) \\ forb(X,Y) (Henckel, Perković & Maathuis 2022).

    Raises
    ------
    AdjustmentError
        ``y`` is not a descendant of ``x`` (no causal path: the effect is zero, O is undefined), O holds an
        unobserved variable, or O is not valid (no adjustment set identifies the effect).

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.DiGraph([("a", "x"), ("a", "y"), ("x", "m"), ("m", "y"), ("p", "m"), ("q", "y"), ("i", "x")])
    >>> sorted(optimal_adjustment_set(g, "x", "y"))   # precision variables p, q in; instrument i out
    ['a', 'p', 'q']
    """
    graph, latent = causal_graph(model)
    _names(graph, {x, y})
    de_x = nx.descendants(graph, x)
    if y not in de_x:
        raise AdjustmentError(f"{y} is not a descendant of {x}: there is no causal path, so the effect is zero "
                              "and the O-set is not defined")
    cn = {w for w in de_x if w == y or w in nx.ancestors(graph, y)}
    forb = {x}.union(cn, *(nx.descendants(graph, w) for w in cn))
    o = frozenset(set().union(*(graph.predecessors(w) for w in cn)) - forb)
    hidden = sorted(o & latent)
    if hidden:
        raise AdjustmentError(f"the optimal adjustment set needs the unobserved variable(s) {hidden}; use "
                              "minimal_adjustment_sets for a set of observed variables, if one exists")
    if not nx.is_d_separator(_backdoor_graph(graph, x), {x}, {y}, set(o)):
        found = open_backdoor_path(graph, x, y, o)
        raise AdjustmentError(f"the effect of {x} on {y} is not identified by adjustment: the path "
                              f"{format_path(graph, found[0]) if found else '?'} stays open")
    return o
