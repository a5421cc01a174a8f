"""Wiring: the morphology of a dendritic neuron, shared by every neuron of a layer.

A wiring over K compartments is three things:

    A[src, dest] in {0, 1}   adjacency, K x K: current flows from compartment src into dest
    input_index              the K_in compartments that receive synaptic input, in the order of the
                             synapse's K_in features (feature k feeds compartment input_index[k])
    output_index             the K_out compartments that feed the soma (soma-facing)

The dendrite turns the adjacency into the coupling current (see `dendrite.py`)

    I_int,j[t] = sum_i A[i, j] * g_ij * (v_i[t-1] - v_j[t-1])

``bidirectional=True`` adds every reverse edge (dest -> src), so current also flows back towards the
tips. Wirings are plain Python objects (no parameters, no state); construction validates the
morphology and raises ValueError naming the offending argument and value.

    Segregated(K)        every compartment is input and output; no edges
    KTo1(k, n_output)    k input compartments feed each of n_output output compartments;
                         inputs 0 .. n_output*k - 1, outputs n_output*k .. K-1, K = n_output*(k+1);
                         input j*k + m -> output n_output*k + j
    Chain(length)        0 -> 1 -> ... -> length-1; input at input_index (default the far end, 0),
                         output the last compartment
    Tree(parents)        parents[i] = parent of compartment i, or -1 for a root; edges child -> parent;
                         roots are the output compartments, leaves the input compartments
"""

from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

import torch


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _positive_int(name: str, value, owner: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{owner}: {name} must be an integer >= 1 (got {name}={value!r})")
    return value


def _index_list(name: str, value, n: int, owner: str) -> List[int]:
    if _is_int(value):
        value = [value]
    try:
        idx = list(value)
    except TypeError:
        raise ValueError(f"{owner}: {name} must be a list of compartment indices (got {name}={value!r})") from None
    if not idx:
        raise ValueError(f"{owner}: {name} is empty: a wiring needs at least one {name.split('_')[0]} compartment")
    for i in idx:
        if not _is_int(i) or not 0 <= i < n:
            raise ValueError(f"{owner}: {name} entry {i!r} is out of range for {n} compartments (got {name}={idx})")
    if len(set(idx)) != len(idx):
        raise ValueError(f"{owner}: {name} has duplicate entries (got {name}={idx})")
    return idx


class Wiring:
    """A morphology from explicit parts: ``edges`` is a list of (src, dest) pairs."""

    def __init__(
        self,
        n_compartments: int,
        edges: Iterable[Sequence[int]] = (),
        input_index: Sequence[int] = (0,),
        output_index: Sequence[int] = (0,),
        bidirectional: bool = False,
    ):
        owner = type(self).__name__
        K = _positive_int("n_compartments", n_compartments, owner)
        pairs: List[Tuple[int, int]] = []
        for e in edges:
            e = tuple(e)
            if len(e) != 2 or not all(_is_int(i) and 0 <= i < K for i in e):
                raise ValueError(f"{owner}: edge {list(e)} is not a (src, dest) pair of indices in [0, {K})")
            if e[0] == e[1]:
                raise ValueError(f"{owner}: edge {list(e)} connects compartment {e[0]} to itself")
            pairs.append(e)
        if bidirectional:
            pairs += [(d, s) for s, d in pairs]
        self.edges: List[Tuple[int, int]] = list(dict.fromkeys(pairs))  # unique, in order
        self.n_compartments = K
        self.input_index = _index_list("input_index", input_index, K, owner)
        self.output_index = _index_list("output_index", output_index, K, owner)
        self.bidirectional = bool(bidirectional)

    @property
    def n_input(self) -> int:
        return len(self.input_index)

    @property
    def n_output(self) -> int:
        return len(self.output_index)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def adjacency(self) -> torch.Tensor:
        """A [K, K] float tensor, A[src, dest] = 1 for every edge."""
        A = torch.zeros(self.n_compartments, self.n_compartments)
        for s, d in self.edges:
            A[s, d] = 1.0
        return A

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_compartments={self.n_compartments}, edges={self.edges}, "
            f"input_index={self.input_index}, output_index={self.output_index})"
        )


class Segregated(Wiring):
    """K independent compartments, each receiving input and feeding the soma."""

    def __init__(self, n_compartments: int):
        K = _positive_int("n_compartments", n_compartments, "Segregated")
        super().__init__(K, (), list(range(K)), list(range(K)))


class KTo1(Wiring):
    """k input compartments feed each of n_output output compartments (K = n_output * (k + 1))."""

    def __init__(self, k: int, n_output: int = 1, bidirectional: bool = False):
        k = _positive_int("k", k, "KTo1")
        n_output = _positive_int("n_output", n_output, "KTo1")
        n_in = k * n_output
        edges = [(j * k + m, n_in + j) for j in range(n_output) for m in range(k)]
        super().__init__(n_in + n_output, edges, list(range(n_in)), list(range(n_in, n_in + n_output)), bidirectional)
        self.k = k


class Chain(Wiring):
    """0 -> 1 -> ... -> length-1; the last compartment faces the soma."""

    def __init__(self, length: int, input_index=0, bidirectional: bool = False):
        L = _positive_int("length", length, "Chain")
        super().__init__(L, [(i, i + 1) for i in range(L - 1)], input_index, [L - 1], bidirectional)


class Tree(Wiring):
    """A forest from a parent list: roots (parent -1) face the soma, leaves receive input."""

    def __init__(self, parents: Sequence[int], bidirectional: bool = False):
        try:
            parents = list(parents)
        except TypeError:
            raise ValueError(f"Tree: parents must be a list of parent indices (got parents={parents!r})") from None
        K = len(parents)
        if K == 0:
            raise ValueError("Tree: parents is empty (got parents=[])")
        for i, p in enumerate(parents):
            if not _is_int(p) or not -1 <= p < K or p == i:
                raise ValueError(
                    f"Tree: parents[{i}]={p!r} must be -1 (a root) or the index of another compartment "
                    f"in [0, {K}) (got parents={parents})"
                )
        for i in range(K):  # every path to the soma must end at a root
            path, j = [i], parents[i]
            while j != -1:
                if j in path:
                    cyc = " -> ".join(map(str, path[path.index(j) :] + [j]))
                    raise ValueError(f"Tree: parents={parents} has a cycle ({cyc})")
                path.append(j)
                j = parents[j]
        roots = [i for i, p in enumerate(parents) if p == -1]
        has_child = set(parents)
        leaves = [i for i in range(K) if i not in has_child]
        super().__init__(K, [(i, p) for i, p in enumerate(parents) if p != -1], leaves, roots, bidirectional)
        self.parents = parents
