"""The benchmark runs end to end (`benchmarks/bench.py --quick`) and produces every row of its table.

No timing assertions: --quick sizes are too small for the ratios to mean anything, and the
machine may be shared. The full run is `python benchmarks/bench.py` (see its docstring).
"""

import importlib
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEND = [
    "segregated-passive",
    "segregated-active",
    "kto1-passive-k=2n_out=2",
    "kto1-active-k=2n_out=2",
    "kto1-passive-k=4n_out=1",
]
EXPECTED = (
    [f"1.784-{w}-10.{m}" for w in (32, 128) for m in ("time", "memory")]
    + [f"2.{d}.{v}" for d in DEND for v in ("vs_point", "vs_floor")]
    + ["2.segregated-passive.vs_reference_multi_step", "2.segregated-passive.vs_reference_step_loop"]
    + [
        f"3.{d}{part}.T{T}"
        for d in ("segregated-passive", "kto1-passive", "segregated-active")
        for T in (4, 8)
        for part in ("", ".layer") + ((".compartments",) if d.endswith("passive") else ())
    ]
    + ["4.data.load_encode", "4.data.same_encoder", "4.data.load_only", "4.data.encode"]
    + ["5.epoch.dend_vs_point", "5.epoch.logs_share", "5.epoch.logs_on_vs_off"]
    + [f"6.{m}.vs_spikingjelly" for m in ("lif", "qif", "eif", "klif", "liaf", "psn")]
    + ["6.psn.vs_lif_T32"]
    + [f"7.exact.w{w}{k}" for w in ("0.5", "3") for k in ("", ".all_k")]
    + ["8.ddp.two_vs_one"]
    + (
        ["6.izhikevich.vs_spikingjelly"]
        if importlib.util.find_spec("dendsn.adaptive")  # (an optional model)
        and hasattr(importlib.import_module("dendsn.adaptive"), "Izhikevich")
        else []
    )
)


def test_quick_benchmark_produces_every_row(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench.py"),
            "--quick",
            "--json",
            "--data-root",
            str(tmp_path / "data"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    rows = {r["id"]: r for r in out["rows"]}
    assert sorted(rows) == sorted(EXPECTED)
    for id_, r in rows.items():
        if id_.endswith(".memory"):  # CPU peak memory comes from a private profiler API
            continue
        if id_ in ("7.exact.w0.5", "7.exact.w3"):  # spikegd (JAX) runs only when given: ours alone here
            assert isinstance(r["ours"], float) and r["ours"] > 0 and r["other"] is None, r
            assert "spikegd (JAX) not measured" in r["note"]
            continue
        for key in ("ours", "other", "ratio"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), (id_, key, r[key])
    assert "spikes differ" not in " ".join(r["note"] for r in out["rows"])
    assert out["meta"]["quick"] and out["meta"]["threads"] == 1


def test_module_entry_point_help():
    p = subprocess.run([sys.executable, "-m", "benchmarks.bench", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0 and "--threads" in p.stdout and "--quick" in p.stdout
