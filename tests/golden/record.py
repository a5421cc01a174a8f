"""Record the golden outputs of today's `dendsn` into tests/golden/recorded/ (compared by tests/test_golden.py).

    .venv/bin/python tests/golden/record.py                 # record everything (about a minute or two)
    .venv/bin/python tests/golden/record.py --check         # record nothing: run twice, and once as real
                                                            # subprocesses, and show what differs

Only re-record when a behaviour change is intended (and say so in the commit): the golden files are
the proof that a refactor changed nothing a user sees. What is recorded, and what is masked, is
described in tests/golden/__init__.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: `import golden`

from golden import DATA, HERE, configs, differences, neurons, save_tensors  # noqa: E402  # noqa: E402


def run_cli_suite(root: Path, out: Path, real_subprocesses: bool = False) -> dict:
    """Run cli_suite.py in a child process (its commands in-process, or each as a real `dendsn` process)."""
    from golden.cli_suite import clean_env

    cmd = [sys.executable, str(HERE / "cli_suite.py"), str(root), str(out)] + (
        ["--subprocess"] if real_subprocesses else []
    )
    p = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=1200)
    if p.returncode != 0:
        raise SystemExit(f"cli_suite failed (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
    return json.loads(out.read_text())


def neuron_records() -> tuple[dict, dict]:
    todo = neurons.cases()
    composed = configs.compose_many([("train", o) for o in todo.values()])
    keys, tensors = {}, {}
    for name, overrides in todo.items():
        cfg = composed[("train", tuple(overrides))]
        if "error" in cfg:
            keys[name] = {"overrides": overrides, **cfg}
            continue
        k, t = neurons.probe(cfg)
        keys[name] = {"overrides": overrides, **k}
        tensors[name] = t
    return keys, tensors


def dump(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def record() -> None:
    DATA.mkdir(exist_ok=True)
    (DATA / "configs.json").write_text(dump(configs.compose_all()))
    keys, tensors = neuron_records()
    (DATA / "neurons.json").write_text(dump(keys))
    save_tensors(tensors, DATA / "neurons.pt.gz")
    with tempfile.TemporaryDirectory() as tmp:
        cli = run_cli_suite(Path(tmp) / "root", Path(tmp) / "cli.json")
    (DATA / "cli.json").write_text(dump(cli))
    size = sum(f.stat().st_size for f in DATA.iterdir())
    print(
        f"recorded {DATA} ({size / 1e6:.2f} MB): {len(cli)} commands, "
        f"{len(json.loads((DATA / 'configs.json').read_text()))} configs, {len(keys)} neuron cases"
    )


def check() -> None:
    """Two in-process recordings of the CLI suite and one with real processes: they must agree."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a = run_cli_suite(tmp / "a", tmp / "a.json")
        b = run_cli_suite(tmp / "b", tmp / "b.json")
        c = run_cli_suite(tmp / "c", tmp / "c.json", real_subprocesses=True)
    for label, other in (("second in-process run", b), ("real subprocesses", c)):
        diff = differences(a, other, "cli", limit=100)
        print(f"{label}: {'identical' if not diff else f'{len(diff)} differences'}")
        for line in diff:
            print("   ", line)
    k1, t1 = neuron_records()
    k2, t2 = neuron_records()
    diff = differences(k1, k2, "neurons") + [
        d for name in t1 for d in neurons.tensor_differences(t1[name], t2[name], name)
    ]
    print(f"neurons, twice: {'identical' if not diff else diff}")


if __name__ == "__main__":
    check() if "--check" in sys.argv[1:] else record()
