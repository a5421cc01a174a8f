"""Wirings: adjacency, input and output compartments of each morphology, and clear errors."""

import pytest
import torch

from dendsn.wiring import Chain, KTo1, Segregated, Tree, Wiring


def test_segregated():
    w = Segregated(3)
    assert (w.n_compartments, w.n_input, w.n_output) == (3, 3, 3)
    assert w.input_index == [0, 1, 2] and w.output_index == [0, 1, 2]
    assert torch.equal(w.adjacency, torch.zeros(3, 3))
    assert w.adjacency.dtype == torch.float32


def test_kto1():
    w = KTo1(k=2, n_output=2)
    assert w.n_compartments == 6 and w.input_index == [0, 1, 2, 3] and w.output_index == [4, 5]
    A = torch.zeros(6, 6)
    A[0, 4] = A[1, 4] = A[2, 5] = A[3, 5] = 1
    assert torch.equal(w.adjacency, A)
    wb = KTo1(k=2, n_output=2, bidirectional=True)
    assert torch.equal(wb.adjacency, A + A.T)
    assert wb.n_edges == 8


def test_chain():
    w = Chain(3)
    assert w.edges == [(0, 1), (1, 2)] and w.input_index == [0] and w.output_index == [2]
    A = torch.tensor([[0.0, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert torch.equal(w.adjacency, A)
    assert Chain(3, input_index=[0, 1]).input_index == [0, 1]
    assert torch.equal(Chain(3, bidirectional=True).adjacency, A + A.T)
    one = Chain(1)  # a single compartment is input and output
    assert one.input_index == [0] and one.output_index == [0] and one.n_edges == 0


def test_tree():
    #      0 (root)          parents = [-1, 0, 0, 1]
    #     / \
    #    1   2 (leaf)
    #    |
    #    3 (leaf)
    w = Tree([-1, 0, 0, 1])
    assert w.output_index == [0] and w.input_index == [2, 3]
    assert w.edges == [(1, 0), (2, 0), (3, 1)]
    assert w.adjacency[3, 1] == 1 and w.adjacency[1, 3] == 0
    assert Tree([-1, 0, 0, 1], bidirectional=True).adjacency[1, 3] == 1
    forest = Tree([-1, -1, 0])  # two roots; root 1 has no child, so it is also a leaf
    assert forest.output_index == [0, 1] and forest.input_index == [1, 2]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Tree([1, 0]), r"cycle \(0 -> 1 -> 0\)"),
        (lambda: Tree([-1, 2, 3, 1]), r"cycle"),
        (lambda: Tree([-1, 5]), r"parents\[1\]=5"),
        (lambda: Tree([0]), r"parents\[0\]=0"),
        (lambda: Tree([]), r"parents is empty"),
        (lambda: KTo1(0), r"k must be an integer >= 1 \(got k=0\)"),
        (lambda: KTo1(2, n_output=0), r"n_output=0"),
        (lambda: Segregated(0), r"n_compartments=0"),
        (lambda: Chain(2.5), r"length=2.5"),
        (lambda: Chain(3, input_index=[]), r"input_index is empty"),
        (lambda: Chain(3, input_index=7), r"input_index entry 7 is out of range"),
        (lambda: Wiring(3, [(0, 1)], [0], []), r"output_index is empty"),
        (lambda: Wiring(3, [(0, 3)], [0], [1]), r"edge \[0, 3\]"),
        (lambda: Wiring(3, [(1, 1)], [0], [1]), r"to itself"),
        (lambda: Wiring(3, [], [0, 0], [1]), r"duplicate"),
    ],
)
def test_invalid_morphologies(make, match):
    with pytest.raises(ValueError, match=match):
        make()
