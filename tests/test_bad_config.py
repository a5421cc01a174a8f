"""Bad-input suite, config category: a wrong value, key, option or type of the composed config.

Each case runs the real CLI entry point and asserts: exit code 2, exactly one `dendsn: error:` line
(the last on stderr) that names what is wrong, no traceback, and nothing written to the working dir.
"""

import pytest
from conftest import one_error, snapshot

HUGE = "9" * 10_000

CASES = [
    # (arguments after `dendsn train`, fragments the one line must contain)
    (["experiment=nope"], ["experiment=nope is not an option of 'experiment'", "fmnist_stdp"]),
    (["experiment=fmnist_stpd"], ["did you mean experiment=fmnist_stdp?"]),
    (["+experiment=nope"], ["experiment=nope is not an option"]),
    (["neuron=lifx"], ["neuron=lifx is not an option of 'neuron'", "dend_lif"]),
    (["neuron.tua=3"], ["neuron.tua is not a known key"]),
    (["tt=3"], ["tt"]),
    (["T=0"], ["T=0 is out of range", ">= 1"]),
    (["batch_size=-1"], ["batch_size=-1 is out of range"]),
    (["epochs=0"], ["epochs=0 is out of range"]),
    (["T=null"], ["T=null is not allowed", "T needs a value"]),
    (["T=abc"], ["T=", "abc"]),
    (["progress=maybe"], ["progress='maybe' is not a valid bool", "true or false"]),
    (["~neuron"], ["neuron has no option", "dendsn list neuron"]),
    (["+neuron.step_mode=s"], ["neuron.step_mode='s' is not supported", "drop the override"]),
    (["device=tpu"], ["device='tpu' is not known", "cpu"]),
    (["amp=fp8"], ["amp='fp8' is not known"]),
    (["lr_schedule=step"], ["lr_schedule='step' is not known"]),
    (["init_rate=2"], ["init_rate=2", "(0, 1)"]),
    (["early_stop.patience=0"], ["early_stop.patience=0 is out of range"]),
    (["seed=-1"], ["seed=-1 is out of range", "[0, 2**63)"]),
    (["seed=99999999999999999999999"], ["seed=99999999999999999999999 is out of range"]),
    ([f"seed={HUGE}"], ["seed= holds a number with hundreds of digits"]),
    (["neuron=lif", "wiring=kto1"], ["wiring applies to dendritic neurons only"]),
    (["T=${nope}"], ["T: its value refers to ${nope}", "not a key"]),
    (["T=${oc.env:DENDSN_TEST_UNSET_VARIABLE}"], ["environment variable DENDSN_TEST_UNSET_VARIABLE", "not set"]),
    (["network.dropout=1.5"], ["dropout must be in [0, 1)"]),
    (["optim.lr=-1"], ["optim:", "learning rate"]),
    (["neuron.tau_d=0.5"], ["tau_d"]),
    (["wiring=kto1", "neuron.coupling_g=5"], ["coupling_g", "stable"]),
]


@pytest.mark.parametrize("args,fragments", CASES, ids=[" ".join(a)[:40] for a, _ in CASES])
def test_a_bad_config_value_is_one_line_and_writes_nothing(dendsn_here, tmp_path, args, fragments):
    before = snapshot(tmp_path)
    p = dendsn_here("train", *args, "progress=false")
    one_error(p, *fragments)
    assert snapshot(tmp_path) == before  # no run dir, no outputs/, no log
    assert not (tmp_path / "outputs").exists()
