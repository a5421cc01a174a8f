"""The commands the README and docs/ show are the ones tested.

Every `dendsn ...` line of a fenced code block in README.md and docs/*.md, every complete
`dendsn train|simulate|list ...` command written inline in their prose (not those with placeholders
such as OVERRIDES or RUN), and every example of `dendsn --help` (`dendsn_cli.cli.USAGE`), is checked
as far as it goes without training:

- `dendsn train ARGS` / `dendsn simulate ARGS`: the real entry point in this process with `--cfg job`
  added, which composes and validates the run's config exactly as a run does (then prints it);
- `dendsn train -m ARGS` / `dendsn simulate -m ARGS`: the real command up to the launch (every job's
  config composed and validated, the sweep dir claimed), with Hydra's app replaced by a stub;
- `dendsn eval ckpt=...` and `resume=...`: against a tiny run trained once in this module, at the path
  the docs use;
- `dendsn torchrun [options] train ARGS` / `torchrun [options] -m dendsn_cli train ARGS`: what every
  process runs, `dendsn train ARGS`, checked as above (torchrun itself: tests/test_distributed.py);
- `dendsn list ...`, `--help`: run as they are;
- `PYTHONPATH=. dendsn ...` (docs/extending.md): the same checks, in a folder holding the plug-in's files
  as the page writes them out (its class and its YAML file), that folder on the import path;
- `$ dendsn ...` followed by a `dendsn: error: ...` line, or an inline command followed by
  ``: `dendsn: error: ...` `` (the docs' error examples): run as they are, and the error line must be
  the one shown.

Commands that need what a test machine lacks are listed in SKIPPED with the reason; commands that are
refused today although the docs show them are in KNOWN_BROKEN (xfail, strict: when they are fixed,
the test says so and the entry goes).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from conftest import run_here

ROOT = Path(__file__).resolve().parents[1]
RUN = "outputs/2026-01-01/12-00-00"  # the run dir the docs' resume / eval examples name

# command (as written, after joining continued lines) -> why it is not checked here
SKIPPED = {
    "dendsn torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 train ...": "two machines, and `...` stands for the user's overrides",
    "dendsn train dataset._target_=my.SpikeTimes encoder=mstb encoder.dt=0.5": "a user's own dataset class (my.SpikeTimes) that the docs name but do not write out",
}
# The plug-ins docs/extending.md writes out in full: name -> (its file, the fenced block whose first line names
# that file). Commands that use them (`PYTHONPATH=. dendsn ...`) run in a folder holding those files.
PLUGINS = {
    "rf.ResonateFire": ("rf.py", "# rf.py"),
    "neuron=rf": ("myconf/neuron/rf.yaml", "# myconf/neuron/rf.yaml"),
    "learning=triplet_stdp": ("myconf/learning/triplet_stdp.yaml", "# myconf/learning/triplet_stdp.yaml"),
    "triplet.": ("triplet.py", "# triplet.py"),
    "dataset=cifar10": ("myconf/dataset/cifar10.yaml", "# myconf/dataset/cifar10.yaml"),
    "cifar10.": ("cifar10.py", "# cifar10.py"),
    "logger=heatmap": ("myconf/logger/heatmap.yaml", "# myconf/logger/heatmap.yaml"),
    "heatmap.": ("heatmap.py", "# heatmap.py"),
}
# command -> why it is refused today (xfail, strict)
KNOWN_BROKEN = {
    "dendsn train -m hydra/sweeper=optuna hydra.sweeper.n_trials=20 'optim.lr=tag(log,interval(1e-4,0.03))' "
    "neuron=lif,dend_lif": "issue 22: the sweep dir is claimed from the hydra.* overrides alone, without hydra/sweeper=optuna, "
    "so hydra.sweeper.n_trials is refused",
    "dendsn train -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu seed=0,1,2": "issue 22: without hydra.sweep.dir the sweep dir is claimed from the hydra.* overrides alone, without "
    "hydra/launcher=submitit_slurm, so hydra.launcher.partition is refused",
}


def _commands_of(text: str) -> list[tuple[str, str | None]]:
    """(command, the error line shown after it or None) for every `dendsn ...` / `torchrun ... -m dendsn_cli`
    line of every fenced code block of ``text``; continued lines (ending in a backslash) are joined."""
    out: list[tuple[str, str | None]] = []
    for block in re.findall(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", text, flags=re.M | re.S):
        lines = block.replace("\\\n", " ").splitlines()
        for i, line in enumerate(lines):
            line = line.strip()
            shown = line.startswith("$ ")
            line = re.sub(r"^(\$ )?(\.venv/bin/)?", "", line)
            command = re.sub(r"^([A-Z_]+=\S* )+", "", line)  # after the environment (PYTHONPATH=. dendsn ...)
            if not (command.startswith("dendsn ") or (command.startswith("torchrun ") and "-m dendsn_cli" in command)):
                continue
            words = shlex.split(line, comments=True)
            error = None
            if shown and i + 1 < len(lines) and lines[i + 1].startswith("dendsn: error: "):
                error = lines[i + 1].strip()
            out.append((" ".join(shlex.quote(w) for w in words), error))
    return out


PLACEHOLDER = re.compile(r"^(\[.*|[A-Z_]{2,}|[\w.+/~]+=([A-Z_]{2,})?|.*\.\.\..*)$")  # GROUP, learning=RULE, ckpt=, ...


def _inline_commands_of(text: str) -> list[tuple[str, str | None]]:
    """The complete `dendsn train|simulate|list ...` commands written inline in the prose of ``text`` (not
    the ones with placeholders such as OVERRIDES or RUN); one followed by a colon and an inline
    `dendsn: error: ...` line is an error example, with that line."""
    prose = re.sub(r"^[ \t]*```[^\n]*\n.*?^[ \t]*```", "", text, flags=re.M | re.S)
    out: list[tuple[str, str | None]] = []
    for m in re.finditer(r"`(dendsn (?:train|simulate|list)\b[^`]*)`(?::\s+`(dendsn: error: [^`]*)`)?", prose):
        words = shlex.split(m.group(1))
        if len(words) > 2 and not any(PLACEHOLDER.match(w) for w in words[2:]):
            out.append((" ".join(shlex.quote(w) for w in words), m.group(2)))
    return out


def _usage_examples() -> list[tuple[str, str | None]]:
    from dendsn_cli.cli import USAGE

    examples = USAGE.split("examples:", 1)[1]
    return [
        (" ".join(shlex.quote(w) for w in shlex.split(ln.strip())), None)
        for ln in examples.splitlines()
        if ln.strip().startswith("dendsn ")
    ]


def _all_commands() -> list[tuple[str, str, str | None]]:
    """(where, command, error line or None), each command once (the first place that shows it)."""
    sources = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found: list[tuple[str, str, str | None]] = []
    seen: set[str] = set()
    for path in sources:
        for cmd, error in _commands_of(path.read_text()) + _inline_commands_of(path.read_text()):
            if cmd not in seen:
                seen.add(cmd)
                found.append((str(path.relative_to(ROOT)), cmd, error))
    for cmd, error in _usage_examples():
        if cmd not in seen:
            seen.add(cmd)
            found.append(("dendsn --help", cmd, error))
    return found


COMMANDS = _all_commands()


def _param(where: str, cmd: str, error: str | None):
    marks = []
    if cmd in SKIPPED:
        marks.append(pytest.mark.skip(reason=SKIPPED[cmd]))
    elif cmd.startswith("PYTHONPATH=") and not any(name in cmd for name in PLUGINS):
        marks.append(pytest.mark.skip(reason="a user's plug-in that docs/extending.md names but does not write out"))
    elif cmd in KNOWN_BROKEN:
        marks.append(pytest.mark.xfail(reason=KNOWN_BROKEN[cmd], strict=True))
    return pytest.param(cmd, error, id=f"{where}: {cmd}", marks=marks)


def _main(*args: str) -> tuple[int, str, str]:
    """`dendsn ARGS` through the real entry point in this process, in the current directory, with the
    process state (logging handlers, Hydra, cwd, ...) restored after it (`conftest.run_here`)."""
    p = run_here(*args, cwd=os.getcwd())
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory holding a tiny trained run at outputs/2026-01-01/12-00-00 (for resume= and ckpt=)."""
    return tmp_path_factory.mktemp("docs_commands")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """A folder with the plug-ins of docs/extending.md written out from its code blocks."""
    root = tmp_path_factory.mktemp("docs_plugins")
    text = (ROOT / "docs" / "extending.md").read_text()
    blocks = re.findall(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", text, flags=re.M | re.S)
    for path, first_line in PLUGINS.values():
        found = [b for b in blocks if b.splitlines()[0].startswith(first_line)]
        assert found, f"docs/extending.md has no code block that starts with {first_line!r}"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(found[0])
    return root


@pytest.fixture(scope="module")
def trained(workdir):
    from conftest import TINY

    here = os.getcwd()
    os.chdir(workdir)
    try:
        code, out, err = _main("train", *TINY, "epochs=1", f"hydra.run.dir={RUN}")
    finally:
        os.chdir(here)
    assert code == 0, out + err
    return workdir


def test_the_docs_show_commands():
    """The extraction itself: every page's commands are found (a broken fence would hide them)."""
    where = {w for w, _, _ in COMMANDS}
    assert "README.md" in where and "dendsn --help" in where
    assert len(COMMANDS) > 40, len(COMMANDS)


@pytest.mark.parametrize("cmd, error", [_param(*c) for c in COMMANDS])
def test_a_documented_command_passes_validation(cmd, error, workdir, tmp_path, request, monkeypatch):
    words = shlex.split(cmd)
    if words[0].startswith("PYTHONPATH="):  # a plug-in of docs/extending.md: run where its files are
        plugins = request.getfixturevalue("plugin_dir")
        monkeypatch.syspath_prepend(str(plugins))
        workdir, words = plugins, words[1:]
    if words[0] == "torchrun":  # torchrun ... -m dendsn_cli train ARGS
        words = ["dendsn", *words[words.index("dendsn_cli") + 1 :]]
    if words[1] == "torchrun":  # what each process runs: dendsn train ARGS
        words = ["dendsn", *words[words.index("train") :]]
    args = words[1:]
    if any(a.startswith(("ckpt=", "resume=")) and RUN in a for a in args):
        request.getfixturevalue("trained")
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(sys, "argv", ["dendsn", *args])
    monkeypatch.delenv("DENDSN_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("DENDSN_DATA", raising=False)

    if error is not None:  # an error example: the line shown is the line printed
        code, out, err = _main(*args)
        assert code == 2, out + err
        assert err.strip().splitlines()[-1] == error
        return
    command = args[0] if args else ""
    if command in ("train", "simulate") and ("-m" in args or "--multirun" in args):
        # A sweep: the real command up to the launch (every job composed and validated, the sweep dir
        # claimed), with Hydra's app replaced by a stub so that no job runs. (`--cfg` cannot be combined
        # with -m, and the sweep check alone would miss what the command refuses when it claims the dir.)
        import hydra

        monkeypatch.chdir(tmp_path)
        launched = []
        monkeypatch.setattr(hydra, "main", lambda **kw: lambda task: lambda: launched.append(task))
        args = [re.sub(r"^(hydra\.(?:sweep|run)\.dir)=/.*", rf"\1={tmp_path}/sweep", a) for a in args]
        code, out, err = _main(*args)
        assert code == 0 and launched, out + err
        return
    if command in ("train", "simulate") and not {"--help", "-h", "--cfg"} & set(args):
        args = [command, "--cfg", "job", *args[1:]]  # compose and validate as a run does, then print
    code, out, err = _main(*args)
    assert code == 0, out + err
    assert "error" not in err, err
