"""Golden outputs: today's `dendsn` must show and write what it showed and wrote when tests/golden/recorded/
was recorded (tests/golden/record.py; re-record only for an intended change of behaviour).

- the composed config of every option of every config group (`_target_`s compared by the object they
  name, so a class moved to a new module and re-exported under its old path still matches);
- every `neuron=` option in a tiny seed-fixed network: state_dict keys, spikes (exactly), potentials
  and gradients (allclose);
- tiny CLI runs (train, eval, resume, a 2-job sweep, simulate, help texts, refusals): terminal lines,
  metrics.json, run-dir listings, .hydra/config.yaml, csv tables, logs, TensorBoard tags and scalars.

The CLI commands run in one child process (`tests/golden/cli_suite.py`) started when this module's
first test starts, while the in-process config and neuron checks run beside it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/: `golden` whatever pytest's import mode

from golden import DATA, HERE, configs, differences, load_tensors, neurons, text_differences  # noqa: E402  # noqa: E402

GOLDEN_CONFIGS = json.loads((DATA / "configs.json").read_text())
GOLDEN_NEURONS = json.loads((DATA / "neurons.json").read_text())
GOLDEN_CLI = json.loads((DATA / "cli.json").read_text())


def fail_on(diff: list[str], what: str) -> None:
    if diff:
        pytest.fail(
            f"{what} differs from the golden output (tests/golden/recorded; re-record only for an intended "
            "change: .venv/bin/python tests/golden/record.py):\n" + "\n".join(diff),
            pytrace=False,
        )


# ---------------------------------------------------------------- the CLI suite, in a child process
@pytest.fixture(scope="module", autouse=True)
def cli_process(tmp_path_factory, request):
    """Start the CLI suite at once (it runs while the in-process tests below run) when a CLI test is
    selected; yield a function that waits for it and returns its artefacts."""
    from golden.cli_suite import clean_env

    if not any(item.name.startswith("test_cli") for item in request.session.items):
        yield None
        return
    tmp = tmp_path_factory.mktemp("golden_cli")
    out, log = tmp / "cli.json", tmp / "cli_suite.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "cli_suite.py"), str(tmp / "root"), str(out)],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    result = {}

    def wait() -> dict:
        if not result:
            try:
                code = proc.wait(timeout=900)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            assert code == 0, f"cli_suite.py failed (exit {code}):\n{log.read_text()[-5000:]}"
            result.update(json.loads(out.read_text()))
        return result

    yield wait
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- composed configs and neurons (in-process)
@pytest.fixture(scope="module")
def composed(request):
    """Every composition the selected tests need (configs and neuron cases), each composed once."""
    selected = {item.callspec.params.get("case") for item in request.session.items if hasattr(item, "callspec")}
    todo = [v for k, v in configs.cases().items() if k in selected]
    todo += [("train", v["overrides"]) for k, v in GOLDEN_NEURONS.items() if k in selected]
    return configs.compose_many(todo)


def test_config_cases_unchanged():
    """The same groups and options exist (a new or removed option changes `dendsn list` too)."""
    assert sorted(configs.cases()) == sorted(GOLDEN_CONFIGS)


@pytest.mark.parametrize("case", sorted(GOLDEN_CONFIGS))
def test_composed_config(case, composed):
    if case not in configs.cases():
        pytest.fail(f"{case}: no such option any more", pytrace=False)
    config, overrides = configs.cases()[case]
    current = composed[(config, tuple(overrides))]
    fail_on(differences(GOLDEN_CONFIGS[case], current, case, targets=True), f"the composed config of `{case}`")


@pytest.fixture(scope="module")
def golden_tensors():
    return load_tensors(DATA / "neurons.pt.gz")


def test_neuron_cases_unchanged():
    assert {k: v for k, v in neurons.cases().items()} == {k: v["overrides"] for k, v in GOLDEN_NEURONS.items()}


@pytest.mark.parametrize("case", sorted(GOLDEN_NEURONS))
def test_neuron(case, composed, golden_tensors):
    golden = GOLDEN_NEURONS[case]
    overrides = golden["overrides"]
    cfg = composed[("train", tuple(overrides))]
    if "error" in cfg:
        keys, tensors = {"overrides": overrides, **cfg}, {}
    else:
        k, tensors = neurons.probe(cfg)
        keys = {"overrides": overrides, **k}
    fail_on(differences(golden, keys, case), f"`{case}`'s state_dict keys / outputs")
    fail_on(
        neurons.tensor_differences(golden_tensors.get(case, {}), tensors, case),
        f"`{case}`'s spikes / potentials / gradients",
    )


# ---------------------------------------------------------------- the CLI runs
def test_cli_commands_unchanged(cli_process):
    current = cli_process()
    assert {k: v["argv"] for k, v in current.items()} == {k: v["argv"] for k, v in GOLDEN_CLI.items()}


TOLERANT = ("tensorboard:",)  # TensorBoard scalars (float32 summaries): within 1e-6; everything else exactly


@pytest.mark.parametrize("name", list(GOLDEN_CLI))
def test_cli(name, cli_process):
    golden, current = GOLDEN_CLI[name], cli_process().get(name)
    assert current is not None, f"{name} did not run"
    diff = differences(golden["exit"], current["exit"], f"{name}: exit code")
    diff += text_differences(golden["stdout"], current["stdout"], f"{name}: stdout")
    diff += text_differences(golden["stderr"], current["stderr"], f"{name}: stderr")
    for key in sorted(k for k in set(golden) | set(current) if k.endswith("_yaml")):
        diff += differences(golden.get(key), current.get(key), f"{name}: {key}", targets=True)
    for key in sorted(k for k in set(golden) | set(current) if k.startswith("dir:")):
        g, c = golden.get(key), current.get(key)
        if g is None or c is None:
            diff.append(f"{name}: {key} {'missing' if c is None else 'unexpected'}")
            continue
        diff += text_differences(g["listing"], c["listing"], f"{name}: {key} listing")
        for part in sorted(set(g) | set(c)):
            if part == "listing":
                continue
            if part not in g or part not in c:
                diff.append(f"{name}: {key} {part} {'missing' if part not in c else 'unexpected'}")
            elif part.startswith("log:"):
                diff += text_differences(g[part], c[part], f"{name}: {key} {part}")
            else:
                diff += differences(
                    g[part],
                    c[part],
                    f"{name}: {key} {part}",
                    tol=1e-6 if part.startswith(TOLERANT) else 0.0,
                    targets=part.startswith("config:"),
                )
    fail_on(diff, f"`dendsn {' '.join(golden['argv'])}`")
