"""Bad-input suite, strings category: what the shell hands over is not an override, or holds
characters the override grammar does not read, or is absurdly long, or empty.

Each case: exit code 2, exactly one `dendsn: error:` line naming the problem (long values shortened),
no traceback, and nothing written to the working dir.
"""

import pytest
from conftest import one_error, snapshot

LONG = "a" * 5000

CASES = [
    (["train", "neuron"], ["'neuron' is not an override", "KEY=VALUE"]),
    (["train", "neuron=l;if"], ["'neuron=l;if' cannot be read", "';'", "quote the value"]),
    (["train", "neuron=lïf"], ["cannot be read", "'ï'"]),
    (["train", "neuron=$(touch pwned)"], ["cannot be read"]),
    (["train", "neuron=`id`"], ["cannot be read"]),
    (["train", "neurön=lif"], ["cannot be read"]),
    (["train", f"resume={LONG}"], ["resume=", "(5000 characters)"]),
    (["eval", f"ckpt={LONG}"], ["ckpt=", "(5000 characters)"]),
    (["train", f"hydra.run.dir={LONG}"], ["hydra.run.dir=", "too long", "(5000 characters)"]),
    (["train", "resume="], ["resume= is empty", "unset shell variable"]),
    (["eval", "ckpt="], ["ckpt= is empty"]),
    (["eval"], ["dendsn eval needs ckpt=PATH"]),
    (["train", "hydra.run.dir="], ["hydra.run.dir= is empty"]),
    (["train", "--bogus-flag"], ["could not parse the arguments"]),
    (["bogus"], ["unknown command 'bogus'"]),
    (["list", "nope"], ["no config group 'nope'"]),
    (["train", "neuron=lif", "neuron=if,lif"], ["is a sweep: add -m"]),
]


@pytest.mark.parametrize("args,fragments", CASES, ids=[" ".join(a)[:30] for a, _ in CASES])
def test_a_bad_string_is_one_line_and_writes_nothing(dendsn_here, tmp_path, args, fragments):
    before = snapshot(tmp_path)
    p = dendsn_here(*args)
    line = one_error(p, *fragments)
    assert len(line) < 400  # a 5,000-character value is shortened, not echoed
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "pwned").exists()  # nothing was handed to a shell
