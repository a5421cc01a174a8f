"""Golden outputs: what `dendsn` shows and writes today, recorded once and compared after every change.

The recorder (`tests/golden/record.py`) and the test (`tests/test_golden.py`) share this code: the
masks that make an output repeatable (times, dates, paths, throughput), and the comparisons.

Files under tests/golden/recorded/ (not data/: .gitignore leaves data/ folders out):
    cli.json       each tiny command of `cli_suite.COMMANDS`: exit code, stdout and stderr lines
                   (masked), and for each run dir its listing, metrics.json without times,
                   .hydra/config.yaml, overrides, csv tables without times, logs, TensorBoard tags
                   and scalar values, checkpoint keys
    configs.json   the composed config of every option of every config group (`configs.py`)
    neurons.json   state_dict keys and shapes of a tiny network for every `neuron=` option (`neurons.py`)
    neurons.pt.gz  their seed-fixed spikes, outputs and gradients (torch.save, gzipped)

What varies from run to run is masked (`MASKS`), nothing else: dates and clock times (log lines),
durations (`10.8s`, `4.12ms`, the unit too: s or ms depends on the duration; the sweep table's time
column), throughput (`161 train samples/s`), the profile's percentages, the temp folder of the run
(<ROOT>) and other absolute paths, event-file names (clock, host, pid), `dendsn --version`'s torch and
python versions (the environment's, not dendsn's); metrics.json / sweep_results.json / simulate.json
keys that measure time, the csv tables' time columns, the perf/ TensorBoard scalars' values. Losses,
accuracies, rates and every other number are compared exactly (TensorBoard scalars within 1e-6;
gradients and potentials allclose(rtol=1e-5, atol=1e-6); spikes exactly). The numbers are those of
this machine's CPU and torch build: on another, re-record.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "recorded"

# ---------------------------------------------------------------- masks
# Each mask: (pattern, replacement). Applied in order to every line of a run's terminal output and logs.
MASKS = [
    (re.compile(r"\d{4}-\d{2}-\d{2}"), "<DATE>"),  # dates (log lines, run dirs)
    (re.compile(r"\d{2}[:-]\d{2}[:-]\d{2}(?:[,.]\d+)?"), "<TIME>"),  # clock times (log lines, run dirs)
    (re.compile(r"\d[\d,]*(?:\.\d+)? (train )?samples/s"), r"<N> \1samples/s"),  # throughput
    (re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?(s|ms)\b"), "<DUR>"),  # durations: 10.8s, 4.12ms (s or ms
    # by the duration itself: unit masked too)
    (re.compile(r"\(\d+%\)"), "(<PCT>)"),  # share of the time of a phase (profile)
    (re.compile(r"torch [0-9][^\s,)]*"), "torch <V>"),  # dendsn --version: the environment's
    (re.compile(r"python 3\.[0-9.]+"), "python <V>"),  # torch and python versions
    (re.compile(r"(?<![^\s'\"(\[=])/(?:[\w.+-]+/)+[\w.+-]*"), "<PATH>"),  # other absolute paths (site-packages)
]
VERSION_MASKS = MASKS[5:7]
TABLE_HEAD = re.compile(r"time \(s\)\s*$")  # the sweep table: its last column is a duration
TABLE_TIME = re.compile(r"\s+(\d+\.\d|-)$")

# metrics.json keys that measure time (seconds, throughput, clocks): left out of the comparison
TIME_KEY = re.compile(r"(^|_)(time|times|duration|seconds|date|started|finished|elapsed|clock)(_|$)|per_s$|_s$")


def normalise_text(text: str, root: Path | str | None = None, masks=MASKS) -> str:
    """``text`` with the run's folder as <ROOT> and every mask of ``masks`` applied (and the time column
    of a sweep's table masked)."""
    if root is not None:
        for r in sorted({str(root), str(Path(root).resolve())}, key=len, reverse=True):
            text = text.replace(r, "<ROOT>")
    for pattern, repl in masks:
        text = pattern.sub(repl, text)
    if masks is MASKS:
        lines, table = text.split("\n"), False
        for i, line in enumerate(lines):
            if TABLE_HEAD.search(line):
                table = True
            elif table and re.match(r"^\s*(\d+|\?)\s", line):
                lines[i] = TABLE_TIME.sub("  <DUR>", line)
            elif table and not line.startswith("---"):
                table = False
        text = "\n".join(lines)
    return text


def clean_metrics(obj):
    """metrics.json without its time-like keys (anywhere in it)."""
    if isinstance(obj, dict):
        return {k: clean_metrics(v) for k, v in obj.items() if not TIME_KEY.search(k)}
    if isinstance(obj, list):
        return [clean_metrics(v) for v in obj]
    return obj


EVENT_FILE = re.compile(r"events\.out\.tfevents\.[^/]*$")


def masked_listing(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (relative, sorted; folders end in '/'), event-file names masked
    (they hold the clock time, host name and pid)."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder)) + ("/" if p.is_dir() else "")
        out.append(EVENT_FILE.sub("events.out.tfevents.<MASKED>", rel))
    return sorted(out)


# ---------------------------------------------------------------- comparison
def locate(path: str):
    """The object a `_target_` string names (None when it names nothing)."""
    from hydra.utils import get_object

    try:
        return get_object(path)
    except Exception:
        return None


def differences(
    golden, current, where: str = "", tol: float = 0.0, targets: bool = False, limit: int = 30
) -> list[str]:
    """Every place where ``current`` differs from ``golden`` (JSON-like values), as lines 'where: golden != current'.

    tol: floats may differ by tol * (1 + |golden|) (0: exactly equal). targets: a `_target_` string
    matches when it names the same object as the golden one (`hydra.utils.get_object`: a class moved to a
    new module and re-exported under its old path still matches), else strings are compared as they are."""
    out: list[str] = []

    def walk(g, c, at):
        if len(out) >= limit:
            return
        if isinstance(g, dict) and isinstance(c, dict):
            for k in sorted(set(g) | set(c), key=str):
                if k not in c:
                    out.append(f"{at}.{k}: missing (golden {_short(g[k])})")
                elif k not in g:
                    out.append(f"{at}.{k}: unexpected (now {_short(c[k])})")
                elif targets and k == "_target_" and isinstance(g[k], str) and isinstance(c[k], str):
                    if g[k] != c[k]:
                        og, oc = locate(g[k]), locate(c[k])
                        if og is None or og is not oc:
                            out.append(f"{at}._target_: {g[k]} != {c[k]} (not the same object)")
                else:
                    walk(g[k], c[k], f"{at}.{k}")
            return
        if isinstance(g, list) and isinstance(c, list):
            if len(g) != len(c):
                out.append(f"{at}: {len(g)} items != {len(c)} items (golden {_short(g)}, now {_short(c)})")
                return
            for i, (a, b) in enumerate(zip(g, c)):
                walk(a, b, f"{at}[{i}]")
            return
        if isinstance(g, float) and isinstance(c, (int, float)) and not isinstance(c, bool) and tol:
            if not (math.isclose(g, c, rel_tol=tol, abs_tol=tol) or (math.isnan(g) and math.isnan(c))):
                out.append(f"{at}: {g!r} != {c!r}")
            return
        if type(g) is not type(c) or (g != c and not (isinstance(g, float) and math.isnan(g) and math.isnan(c))):
            out.append(f"{at}: {_short(g)} != {_short(c)}")

    walk(golden, current, where)
    return out


def _short(v, n: int = 160) -> str:
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


def text_differences(golden: list[str], current: list[str], where: str) -> list[str]:
    """Lines of text: a unified diff (empty when equal)."""
    import difflib

    if golden == current:
        return []
    return [f"{where}:"] + list(difflib.unified_diff(golden, current, "golden", "now", lineterm="", n=1))[:60]


def save_tensors(obj, path: Path) -> None:
    import gzip
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    path.write_bytes(gzip.compress(buf.getvalue(), 9, mtime=0))


def load_tensors(path: Path):
    import gzip
    import io

    import torch

    return torch.load(io.BytesIO(gzip.decompress(path.read_bytes())), weights_only=True)
