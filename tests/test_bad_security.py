"""Bad-input suite, security category: checkpoints are data, never code.

A checkpoint is loaded with torch's data-only unpickler, so a pickle payload does not run; and the
overrides a checkpoint stores are used only when every `_target_` they make is one of dendsn's own
classes or one the user names on this command line. Each case proves the payload did not run (the
file it would create is absent), the one-line refusal, and that nothing was changed.
"""

import os
import pickle
import zipfile

import pytest
import torch
from conftest import one_error, run_here, snapshot


@pytest.fixture
def run(run_copy):
    return run_copy


class Payload:
    """Unpickling this creates ``marker``: proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _with_payload(run, marker):
    ck = torch.load(run / "checkpoints/last.pt", weights_only=True)
    ck["extra"] = Payload(marker)
    path = run / "checkpoints/evil.pt"
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_a_pickle_payload_in_a_checkpoint_does_not_run(run, tmp_path, dendsn_here, command):
    marker = tmp_path / "PWNED"
    path = _with_payload(run, marker)
    before = snapshot(tmp_path)
    args = ["eval", f"ckpt={path}"] if command == "eval" else ["train", f"resume={path}"]
    p = dendsn_here(*args)  # refused while loading, before any training: in this process
    one_error(p, "holds Python objects beyond tensors", "was not loaded")
    assert not marker.exists()
    assert snapshot(tmp_path) == before


def test_a_raw_pickle_renamed_pt_does_not_run(tmp_path, dendsn_here):
    marker = tmp_path / "PWNED"
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as z:  # torch's zip layout around a hostile data.pkl
        z.writestr("model/data.pkl", pickle.dumps(Payload(marker)))
        z.writestr("model/version", "3\n")
    p = dendsn_here("eval", f"ckpt={path}")
    one_error(p)
    assert not marker.exists()


def _with_overrides(run, extra, name="crafted.pt"):
    ck = torch.load(run / "checkpoints/last.pt", weights_only=True)
    ck["overrides"] = list(ck["overrides"]) + extra
    path = run / "checkpoints" / name
    torch.save(ck, path)
    return path


@pytest.mark.parametrize("command", ["eval", "resume"])
@pytest.mark.parametrize(
    "extra,where",
    [
        (["encoder._target_=torch.load"], "encoder._target_=torch.load"),
        (
            ['+encoder.payload={_target_:builtins.exec,_args_:[\'open("PWNED","w")\']}'],
            "encoder.payload._target_=builtins.exec",
        ),
        (["learning._target_=os.system"], "learning._target_=os.system"),
    ],
)
def test_stored_overrides_cannot_name_foreign_code(run, tmp_path, dendsn_here, command, extra, where):
    path = _with_overrides(run, extra)
    before = snapshot(tmp_path)
    args = ["eval", f"ckpt={path}"] if command == "eval" else ["train", f"resume={path}"]
    p = dendsn_here(*args)
    one_error(p, where, "not one of dendsn's own classes", "name it on the command line")
    assert not (tmp_path / "PWNED").exists()
    assert snapshot(tmp_path) == before


def test_stored_hydra_settings_are_refused(run, dendsn_here):
    path = _with_overrides(run, ["+hydra.callbacks.x._target_=builtins.exec"])
    one_error(dendsn_here("eval", f"ckpt={path}"), "stores the Hydra setting", "never writes")


def test_a_target_the_user_names_is_trusted(run, tmp_path):
    """The user's own plug-in, stored by a run, is used again once the user names it on the command line."""
    plug = tmp_path / "plugins"
    plug.mkdir()
    (plug / "myenc.py").write_text("from dendsn_cli.encoders import Direct as Mine\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(plug), os.environ.get("PYTHONPATH", "")]))}
    path = _with_overrides(run, ["encoder._target_=myenc.Mine"])
    p = run_here("eval", f"ckpt={path}", cwd=tmp_path, env=env)
    one_error(p, "encoder._target_=myenc.Mine")
    p = run_here("eval", f"ckpt={path}", "encoder._target_=myenc.Mine", cwd=tmp_path, env=env, check=True)
    assert "test acc" in p.stdout
