"""Bad-input suite, checkpoints category: a file given to `ckpt=` / `resume=` that is not a good dendsn
checkpoint: corrupt, truncated, empty, of another format, missing keys, keys of the wrong type.

Each case: exit code 2, one `dendsn: error:` line naming the file and the problem, no traceback, and
the file (and the run it came from) unchanged.
"""

import pytest
import torch
from conftest import one_error, run_here, snapshot


@pytest.fixture
def copy(run_copy):
    return run_copy


def _good(copy):
    return torch.load(copy / "checkpoints/last.pt", weights_only=True)


def _edit(copy, change, name="edited.pt"):
    ck = _good(copy)
    change(ck)
    path = copy / name
    torch.save(ck, path)
    return path


def _broken(copy, case):
    """Write the damaged checkpoint of ``case``; return its path and the fragments of the message."""
    last = copy / "checkpoints/last.pt"
    if case == "truncated":
        data = last.read_bytes()
        (copy / "cut.pt").write_bytes(data[: len(data) // 2])
        return copy / "cut.pt", ["is not a readable checkpoint", "corrupt or truncated"]
    if case == "empty":
        (copy / "empty.pt").write_bytes(b"")
        return copy / "empty.pt", ["is not a readable checkpoint"]
    if case == "text":
        (copy / "notes.pt").write_text("my notes, not a checkpoint\n")
        return copy / "notes.pt", ["is not a readable checkpoint"]
    if case == "tensor":
        torch.save(torch.zeros(3), copy / "tensor.pt")
        return copy / "tensor.pt", ["is not a dendsn checkpoint"]
    if case == "format":
        return _edit(copy, lambda ck: ck.update(format="other-9")), ["is not a dendsn checkpoint"]
    if case == "no-model":
        return _edit(copy, lambda ck: ck.pop("model")), ["is damaged: its 'model' is missing"]
    if case == "epoch-type":
        return _edit(copy, lambda ck: ck.update(epoch="three")), ["is damaged: its 'epoch' is a str"]
    if case == "overrides-type":
        return _edit(copy, lambda ck: ck.update(overrides=[1, 2])), ["is damaged"]
    if case == "weights-type":
        return _edit(copy, lambda ck: ck["model"].update({next(iter(ck["model"])): [1.0, 2.0]})), ["is damaged"]
    if case == "negative":
        return _edit(copy, lambda ck: ck.update(batch=-4)), ["is damaged"]
    if case == "rng":
        return _edit(copy, lambda ck: ck["rng"].pop("torch")), ["is damaged: its random-number state is incomplete"]
    if case == "shape":

        def grow(ck):
            k = next(k for k, v in ck["model"].items() if v.dim() == 2)
            ck["model"][k] = torch.zeros(3, 3)

        return _edit(copy, grow), ["holds a different model", "is (3, 3) there"]
    if case == "nowhere":
        return copy / "missing.pt", ["no checkpoint there"]
    raise AssertionError(case)


CASES = [
    "truncated",
    "empty",
    "text",
    "tensor",
    "format",
    "no-model",
    "epoch-type",
    "overrides-type",
    "weights-type",
    "negative",
    "rng",
    "shape",
    "nowhere",
]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_checkpoint_given_to_eval_is_one_line_and_nothing_changes(copy, tmp_path, dendsn_here, case):
    path, fragments = _broken(copy, case)
    before = snapshot(tmp_path)
    line = one_error(dendsn_here("eval", f"ckpt={path}"), *fragments)
    assert path.name in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", ["truncated", "no-model", "epoch-type", "rng", "shape"])
def test_a_bad_checkpoint_given_to_resume_is_one_line_and_nothing_changes(copy, tmp_path, case):
    path, fragments = _broken(copy, case)
    before = snapshot(tmp_path)
    line = one_error(run_here("train", f"resume={path}", "progress=false", cwd=tmp_path), *fragments)
    assert path.name in line
    assert snapshot(tmp_path) == before


def test_a_checkpoint_dir_without_checkpoints(dendsn_here, tmp_path):
    (tmp_path / "empty_run").mkdir()
    one_error(dendsn_here("eval", "ckpt=empty_run"), "ckpt=empty_run: no checkpoint there")
