"""Sweeps you can compare: the results table, job dirs named by their overrides, Optuna studies, and
the checks that stop a bad sweep before its first job. Real CLI on tiny data, one epoch per job."""

import csv
import json
import re
from pathlib import Path

import pytest
from conftest import TINY

JOB = [*TINY, "epochs=1"]


def one_error_line(p) -> str:
    assert p.returncode != 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dendsn: error: "), p.stderr
    return lines[0]


def results(sweep: Path) -> tuple[list[dict], dict]:
    with open(sweep / "sweep_results.csv") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((sweep / "sweep_results.json").read_text())


# ------------------------------------------------------------------ basic sweeper
def test_sweep_writes_a_results_table_and_names_job_dirs_by_their_overrides(dendsn_here, tmp_path):
    # choice(3): a swept key with one value, so a dir name holds two keys (the '=' and ',' resume must quote)
    p = dendsn_here("train", "-m", *JOB, "neuron=lif,if", "seed=choice(3)", "hydra.sweep.dir=sweep", check=True)
    sweep = tmp_path / "sweep"
    assert sorted(d.name for d in sweep.iterdir() if d.is_dir()) == ["0_neuron=lif,seed=3", "1_neuron=if,seed=3"]
    rows, doc = results(sweep)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"}
    assert {r["dir"] for r in rows} == {"0_neuron=lif,seed=3", "1_neuron=if,seed=3"}
    assert sorted(o for r in doc["rows"] for o in r["override_list"] if o.startswith("neuron=")) == [
        "neuron=if",
        "neuron=lif",
    ]
    assert "dataset.n_train=300" in rows[0]["overrides"]  # the csv keeps every override
    assert doc["sort_key"] == "best_val_acc" and len(doc["rows"]) == 2
    accs = [r["best_val_acc"] for r in doc["rows"]]
    assert all(isinstance(a, float) for a in accs) and accs == sorted(accs, reverse=True)
    assert all(r["epochs"] == 1 and r["time_s"] > 0 and r["error"] is None for r in doc["rows"])
    header = next(ln for ln in p.stdout.splitlines() if ln.lstrip().startswith("job"))
    for col in ("overrides", "status", "best val", "test@best", "final test", "epochs", "time (s)"):
        assert col in header
    table = p.stdout[p.stdout.index(header) :]
    assert re.search(r"^\s+[01]\s+neuron=lif,seed=3\s+completed\s+[\d.]+%", table, re.M), table
    assert re.search(r"^\s+[01]\s+neuron=if,seed=3\s+completed\s+[\d.]+%", table, re.M), table
    assert max(map(len, table.splitlines()[:4])) <= 120
    assert "2 job(s) completed, 0 failed" in p.stderr

    job = sweep / "1_neuron=if,seed=3"  # resume= a sweep job dir
    dendsn_here("train", f"resume={job}", "epochs=2", check=True)
    assert json.loads((job / "metrics.json").read_text())["epochs_completed"] == 2
    assert sorted(d.name for d in sweep.iterdir() if d.is_dir()) == ["0_neuron=lif,seed=3", "1_neuron=if,seed=3"]


def test_failed_job_is_in_the_table_with_its_error(dendsn_here, tmp_path):
    p = dendsn_here("train", "-m", *JOB, "neuron.tau=2.0,0.5", "hydra.sweep.dir=sweep")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    rows, doc = results(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["completed", "failed"]  # a job without a value sorts last
    assert rows[1]["dir"] == "1_neuron.tau=0.5" and "tau must be > 1" in rows[1]["error"]
    assert doc["rows"][1]["best_val_acc"] is None
    assert re.search(r"^\s+1\s+neuron.tau=0.5\s+failed\s+-\s+-\s+-", p.stdout, re.M), p.stdout
    assert "1 job(s) completed, 1 failed" in p.stderr
    assert re.search(r"failed .*1_neuron.tau=0.5: neuron: tau must be > 1", p.stderr)


# ------------------------------------------------------------------ Optuna
def test_optuna_study_with_an_interval_and_a_categorical_key(dendsn_here, tmp_path):
    job = [o for o in JOB if not o.startswith("optim.lr=")]
    p = dendsn_here(
        "train",
        "-m",
        *job,
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.seed=0",
        "optim.lr=interval(0.001,0.03)",
        "neuron=lif,if",
        "hydra.sweep.dir=study",
        check=True,
    )
    sweep = tmp_path / "study"
    rows, doc = results(sweep)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"completed"}
    for r in rows:
        lr = float(re.search(r"optim.lr=([\d.e-]+)", r["overrides"]).group(1))
        assert 0.001 <= lr <= 0.03 and re.search(r"neuron=(lif|if)\b", r["overrides"])
        assert re.fullmatch(r"\d_neuron=(lif|if),optim.lr=[\d.e-]+", r["dir"]), r["dir"]
    best = doc["optuna"]  # maximized: the best job's value
    assert best["best_value"] == pytest.approx(max(r["best_val_acc"] for r in doc["rows"]))
    assert set(best["best_params"]) == {"optim.lr", "neuron"}
    assert "optim.lr=" in p.stdout and "dendsn: optuna: best validation accuracy" in p.stdout


# ------------------------------------------------------------------ checks before the first job
@pytest.mark.parametrize(
    "args,expected",
    [
        (["optim.lr=interval(0.001,0.01)"], "use hydra/sweeper=optuna"),
        (["neuron=glob(*zz)"], "neuron=glob(*zz) matches no option of 'neuron'; available: adex, alif"),
        (["neuron=glob(*lif)", "wiring=chain"], "wiring applies to dendritic neurons only"),  # glob expanded: lif, plif
        (["hydra/sweeper=optuna", "T=interval(4,16)"], "for an integer key use range("),
        (["hydra.sweeper.n_trials=5", "seed=0,1"], "need hydra/sweeper=optuna"),
        (
            ["optim.lr=0.005", "optim.lr=0.01,0.02"],
            "optim.lr is given twice (optim.lr=0.005 and optim.lr=0.01,0.02); keep one",
        ),
    ],
)
def test_sweep_mistakes_end_in_one_line(dendsn_here, tmp_path, args, expected):
    line = one_error_line(dendsn_here("train", "-m", *args, "hydra.sweep.dir=sweep"))
    assert expected in line
    assert not (tmp_path / "sweep").exists()


def test_a_bad_value_in_job_66_of_70_stops_the_sweep_before_it_starts(dendsn_here, tmp_path):
    seeds = ",".join("x" if i == 65 else str(i) for i in range(70))
    line = one_error_line(dendsn_here("train", "-m", *JOB, f"seed={seeds}", "hydra.sweep.dir=sweep"))
    assert "seed='x' has the wrong type" in line
    assert not (tmp_path / "sweep").exists()


# ------------------------------------------------------------------ collection, in process
def _job(sweep: Path, name: str, overrides: list[str], metrics: dict | None = None, error: str | None = None):
    d = sweep / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    if error is not None:
        (d / "error.txt").write_text(error + "\n")


def test_collect_reads_old_and_new_metrics_and_every_status(tmp_path):
    from dendsn_cli import sweep as sw

    s = tmp_path / "sweep"
    new = {
        "status": "completed",
        "epochs_completed": 3,
        "time_s": 4.2,
        "final": {"epoch": 3, "val_acc": 0.8, "test_acc": 0.79},
        "best": {"epoch": 2, "val_acc": 0.85, "test_acc": 0.83},
    }
    old = {
        "status": "completed",
        "epochs_completed": 2,
        "time_s": 3.0,  # before the validation split
        "final": {"epoch": 2, "test_acc": 0.7},
        "best": {"test_acc": 0.75, "epoch": 1},
    }
    _job(s, "0", ["neuron=lif", "T=8"], old)
    _job(s, "1_neuron=if", ["neuron=if", "T=8"], new)
    _job(
        s,
        "2_neuron=plif",
        ["neuron=plif", "T=8"],
        {"status": "diverged", "epochs_completed": 1, "best": {}},
        error="loss became nan at epoch 2",
    )
    _job(s, "3_neuron=dend_lif", ["neuron=dend_lif", "T=8"], {"status": "interrupted"}, error="interrupted (epoch 1)")
    _job(s, "4_neuron=dend_if", ["neuron=dend_if", "T=8"], error="neuron: tau must be > 1")
    _job(s, "5_neuron=lif", ["neuron=lif", "T=8"])  # no metrics yet
    (s / "6_x").mkdir()  # not a job (no .hydra)
    rows = sw.collect(s)
    assert [r["job"] for r in rows] == [1, 0, 2, 3, 4, 5]
    assert [r["status"] for r in rows] == ["completed", "completed", "diverged", "interrupted", "failed", "running"]
    assert rows[0]["best_val_acc"] == 0.85 and rows[0]["test_acc_at_best_val"] == 0.83 and rows[0]["best_epoch"] == 2
    assert rows[1]["best_val_acc"] is None and rows[1]["test_acc_at_best_val"] is None  # old: best was by test
    assert rows[1]["final_test_acc"] == 0.7 and rows[1]["epochs"] == 2
    assert rows[2]["error"] == "loss became nan at epoch 2"
    assert [r["swept"] for r in rows[:2]] == ["neuron=if", "neuron=lif"]  # T is the same everywhere
    table = sw.format_table(rows)
    assert "85.00%" in table and "83.00%" in table and "70.00%" in table
    assert all(len(ln) <= 120 for ln in table.splitlines())
    csv_path, json_path = sw.write_results(s, rows)
    assert len(list(csv.DictReader(open(csv_path)))) == 6
    assert json.loads(json_path.read_text())["rows"][4]["error"] == "neuron: tau must be > 1"
    assert sw.objective(new) == 0.85 and sw.objective(old) == 0.75 and sw.objective(None) is None


def test_job_dir_names_are_safe_and_short():
    from dendsn_cli.runs.sweep import MAX_DIR_NAME, job_dir_name

    assert job_dir_name(0, "neuron=lif,seed=0") == "0_neuron=lif,seed=0"
    assert job_dir_name(7, "") == "7"
    assert (
        job_dir_name(1, "dataset.root=/data/x y,optim.lr=0.0123456789") == "1_dataset.root=_data_x_y,optim.lr=0.01235"
    )
    long = job_dir_name(2, ",".join(f"k{i}=v{i}" for i in range(100)))
    assert len(long.encode()) <= MAX_DIR_NAME and long.startswith("2_k0=v0,") and "/" not in long
