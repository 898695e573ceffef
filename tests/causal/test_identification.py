"""Identification: backdoor validity and minimal sets against pgmpy and DoWhy on random DAGs, the O-set on
Henckel et al.'s examples, and the AdjustmentError refusals (variable and path named)."""

import warnings
from itertools import combinations

import networkx as nx
import numpy as np
import pytest

from medtwin.causal import (
    AdjustmentError, check_adjustment, is_backdoor_set, minimal_adjustment_sets, optimal_adjustment_set,
)
from medtwin.errors import ModelError


def random_dag(rng, n=7, p=0.35):
    nodes = [f"v{i}" for i in range(n)]
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    for i in range(n):
        for j in range(i + 1, n):
            if rng.uniform() < p:
                g.add_edge(nodes[i], nodes[j])
    return g


def pgmpy_dag(g):
    from pgmpy.base import DAG

    dag = DAG()
    dag.add_nodes_from(g.nodes)
    dag.add_edges_from(g.edges)
    return dag


@pytest.fixture(scope="module")
def graphs():
    rng = np.random.default_rng(7)
    out = []
    while len(out) < 20:
        g = random_dag(rng)
        pairs = [(x, y) for x in g for y in nx.descendants(g, x)]
        if pairs:
            out.append((g, pairs[int(rng.integers(len(pairs)))]))
    return out


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_backdoor_validity_matches_pgmpy_and_dowhy(graphs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from dowhy.graph import check_valid_backdoor_set
        from pgmpy.inference import CausalInference
    checked = 0
    for g, (x, y) in graphs:
        inference = CausalInference(pgmpy_dag(g))
        others = sorted(set(g) - {x, y})
        for size in range(0, 4):
            for z in combinations(others, size):
                ours = is_backdoor_set(g, x, y, set(z))
                if set(z) & nx.descendants(g, x):   # pgmpy and DoWhy check only the blocking condition (ii)
                    assert not ours
                    continue
                assert ours == inference.is_valid_backdoor_adjustment_set(x, y, list(z)), (list(g.edges), x, y, z)
                assert ours == check_valid_backdoor_set(g, [x], [y], list(z))["is_dseparated"]
                checked += 1
    assert checked > 100


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_minimal_sets_match_pgmpy(graphs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgmpy.inference import CausalInference
    for g, (x, y) in graphs:
        theirs = {frozenset(s) for s in CausalInference(pgmpy_dag(g)).get_all_backdoor_adjustment_sets(x, y)}
        ours = set(minimal_adjustment_sets(g, x, y))
        if not theirs:      # pgmpy returns nothing when the empty set is already valid
            assert ours in ({frozenset()}, set()), (list(g.edges), x, y)
            continue
        minimal_theirs = {s for s in theirs if not any(t < s for t in theirs)}
        assert ours == minimal_theirs, (list(g.edges), x, y)
        for s in ours:
            assert all(not is_backdoor_set(g, x, y, s - {v}) for v in s)


def test_optimal_set_examples_and_validity(graphs):
    # Henckel, Perković & Maathuis (2022) Fig. 1-style: confounder a, mediator m with precision parent p,
    # outcome precision q, instrument i (left out), and a descendant-of-treatment d (forbidden)
    g = nx.DiGraph([("a", "x"), ("a", "y"), ("x", "m"), ("m", "y"), ("p", "m"), ("q", "y"), ("i", "x"),
                    ("x", "d")])
    assert optimal_adjustment_set(g, "x", "y") == {"a", "p", "q"}
    # O is valid whenever some valid set exists (Henckel et al. Theorem 1)
    for g, (x, y) in graphs:
        o = optimal_adjustment_set(g, x, y)
        assert is_backdoor_set(g, x, y, o)
    with pytest.raises(AdjustmentError, match="not a descendant"):
        optimal_adjustment_set(nx.DiGraph([("y", "x")]), "x", "y")
    latent = nx.DiGraph([("u", "x"), ("u", "y"), ("x", "y")])
    latent.nodes["u"]["latent"] = True
    with pytest.raises(AdjustmentError, match=r"unobserved variable\(s\) \['u'\]"):
        optimal_adjustment_set(latent, "x", "y")
    assert minimal_adjustment_sets(latent, "x", "y") == []


def test_refusals_name_the_variable_and_the_path():
    g = nx.DiGraph([("c", "x"), ("c", "y"), ("x", "m"), ("m", "y"), ("x", "s"), ("y", "s"),
                    ("a", "x"), ("a", "k"), ("b", "k"), ("b", "y")])
    with pytest.raises(AdjustmentError, match=r"cannot adjust for m: .*descendant of the treatment x \(path x -> m\)"
                                              r", a mediator"):
        check_adjustment(g, "x", "y", {"c", "m"})
    with pytest.raises(AdjustmentError, match=r"cannot adjust for s: .*\(path x -> s\), a common effect"):
        check_adjustment(g, "x", "y", {"c", "s"})
    # M-bias: k is pre-treatment but a collider between a and b
    with pytest.raises(AdjustmentError, match=r"cannot adjust for k: .*collider opens the non-causal path "
                                              r"x <- a -> k <- b -> y"):
        check_adjustment(g, "x", "y", {"c", "k"})
    assert check_adjustment(g, "x", "y", {"c", "k", "b"}) == {"c", "k", "b"}
    with pytest.raises(AdjustmentError, match=r"leaves the backdoor path x <- c -> y open"):
        check_adjustment(g, "x", "y", set())
    with pytest.raises(AdjustmentError, match="cannot adjust for x: it is the treatment"):
        check_adjustment(g, "x", "y", {"x", "c"})
    with pytest.raises(ModelError, match="no variable 'w'"):
        check_adjustment(g, "x", "y", {"w"})
    assert issubclass(AdjustmentError, ModelError)
