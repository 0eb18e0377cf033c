"""Checkpoints record and check what defines the function, hash the whole file, and never
cost a user the trained model: the folder is checked before training, a failed save warns
and returns the result, and interrupted saves' temporaries are cleaned up."""

import hashlib
import io
import json
import os
import subprocess
import sys
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import scoresde as sd
from scoresde import nn
from scoresde._train import _checkpoint, _fit


DATA = jr.normal(jr.key(0), (64, 2))


def mlp(activation=jax.nn.relu):
    return nn.TimeMLP(2, width=8, depth=1, activation=activation, key=jr.key(2))


def train(path, model=None, objective=None, num_steps=4, **kwargs):
    model = mlp() if model is None else model
    objective = sd.DenoisingScoreMatching(sd.VPSDE()) if objective is None else objective
    kwargs = {"checkpoint": path, "steps_per_dispatch": 2, "progress": False, **kwargs}
    return sd.fit(
        model,
        objective,
        DATA,
        optimizer=optax.adam(1e-3),
        num_steps=num_steps,
        batch_size=32,
        key=jr.key(1),
        **kwargs,
    )


def one_line(error) -> str:
    text = str(error.value)
    assert len(text.splitlines()) == 1, text
    return text


# Item 1: what defines the function is recorded and checked.


def test_a_relu_checkpoint_is_refused_by_a_tanh_model(tmp_path):
    path = tmp_path / "relu.ckpt"
    result = train(path)
    tanh = mlp(jax.nn.tanh)
    with pytest.raises(sd.CheckpointError) as info:
        sd.load_checkpoint(path, tanh)
    assert "model.activation is jax.nn.relu in the file, jax.nn.tanh in the model" in one_line(info)
    with pytest.raises(sd.CheckpointError, match="jax.nn.relu in the file, jax.nn.tanh"):
        train(path, model=tanh, num_steps=6, resume=True)
    assert sd.load_model(path).mlp.activation is jax.nn.relu
    loaded, _ = sd.load_checkpoint(path, mlp())
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(eqx.filter(loaded, eqx.is_array)),
            jax.tree.leaves(eqx.filter(result.model, eqx.is_array)),
            strict=True,
        )
    )


def test_a_vp_checkpoint_is_refused_by_a_sub_vp_model(tmp_path):
    path = tmp_path / "vp.ckpt"
    vp = sd.NoisePrediction(mlp(), sd.VPSDE())
    train(path, model=vp, objective=sd.DenoisingScoreMatching(vp.sde))
    sub = sd.NoisePrediction(mlp(), sd.SubVPSDE())
    with pytest.raises(sd.CheckpointError) as info:
        sd.load_checkpoint(path, sub)
    assert "model.sde is scoresde.VPSDE in the file, scoresde.SubVPSDE in the model" in one_line(
        info
    )
    with pytest.raises(sd.CheckpointError, match="scoresde.VPSDE in the file"):
        train(path, model=sub, objective=sd.DenoisingScoreMatching(sub.sde), resume=True)
    # load_model rebuilds the model as saved, SDE included.
    assert type(sd.load_model(path).sde) is sd.VPSDE


def test_resuming_a_bare_network_on_another_sde_is_refused(tmp_path):
    """A network without an SDE inside: the objective's SDE is what it learned the score
    of, and the checkpoint records it."""
    path = tmp_path / "net.ckpt"
    train(path)
    assert sd.read_metadata(path)["objective"]["sde"]["class"] == "scoresde.VPSDE"
    with pytest.raises(sd.CheckpointError) as info:
        train(path, objective=sd.DenoisingScoreMatching(sd.SubVPSDE()), resume=True)
    assert one_line(info) == (
        f"{path} was trained for the SDE scoresde.VPSDE(beta_min=0.1, beta_max=20.0, T=1.0), "
        "but this call's objective has scoresde.SubVPSDE(beta_min=0.1, beta_max=20.0, T=1.0); "
        "resume with the objective's SDE as saved, or start a new run (resume=False)."
    )
    with pytest.raises(sd.CheckpointError, match="beta_max=20.0.*beta_max=10.0"):
        train(path, objective=sd.DenoisingScoreMatching(sd.VPSDE(beta_max=10.0)), resume=True)
    # The same SDE resumes; a different loss weighting is still the same function.
    other_weighting = sd.DenoisingScoreMatching(sd.VPSDE(), weighting="likelihood")
    assert int(train(path, objective=other_weighting, num_steps=6, resume=True).state.step) == 6


def test_an_edit_of_the_header_is_detected(tmp_path):
    """The loss history lives in the header: an edit of it fails the SHA-256 too."""
    path = tmp_path / "run.ckpt"
    train(path)
    raw = path.read_bytes()
    losses = json.dumps(sd.read_metadata(path)["losses"]).encode()
    assert raw.count(losses) == 1
    edited = json.dumps([0.0] * 4).encode().ljust(len(losses))  # same length, valid JSON
    path.write_bytes(raw.replace(losses, edited))
    with pytest.raises(sd.CheckpointError) as info:
        sd.read_metadata(path)
    assert "is corrupt or was edited: its SHA-256 does not match" in one_line(info)
    path.write_bytes(raw[:-1])
    with pytest.raises(sd.CheckpointError, match="is truncated"):
        sd.load_checkpoint(path, mlp())


def test_a_format_1_checkpoint_still_loads(tmp_path):
    """Files of the previous format (SHA-256 of the payload in the header) load as before,
    and their payload is still verified."""
    model = mlp()
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, model)
    payload = buffer.getvalue()
    header = {
        "format": 1,
        "leaves": _checkpoint._leaf_specs(model),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload_bytes": len(payload),
        "metadata": {"step": 3},
    }
    head = json.dumps(header).encode()
    path = tmp_path / "old.ckpt"
    path.write_bytes(_checkpoint._MAGIC + len(head).to_bytes(8, "little") + head + payload)
    loaded, meta = sd.load_checkpoint(path, mlp(jax.nn.tanh))  # no recipe: arrays only
    assert meta == {"step": 3}
    np.testing.assert_array_equal(loaded.mlp.layers[0].weight, model.mlp.layers[0].weight)
    flipped = bytearray(path.read_bytes())
    flipped[-3] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(sd.CheckpointError, match="the payload's SHA-256 does not match"):
        sd.load_checkpoint(path, model)


def test_a_newer_format_says_to_upgrade(tmp_path):
    path = tmp_path / "new.ckpt"
    head = json.dumps({"format": 3, "payload_bytes": 0}).encode()
    path.write_bytes(_checkpoint._MAGIC + len(head).to_bytes(8, "little") + head)
    with pytest.raises(sd.CheckpointError, match="format 3; this scoresde reads formats 1, 2; "):
        sd.read_metadata(path)


# Item 13: late failures never lose the trained model.


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if a training step runs: the error must come before any."""

    def refuse(*args, **kwargs):
        raise AssertionError("a training step ran before the checkpoint was checked")

    monkeypatch.setattr(_fit, "_train_chunk", refuse)


def test_a_checkpoint_under_a_file_fails_before_training(tmp_path, no_training):
    (tmp_path / "notes.txt").write_text("a file")
    path = tmp_path / "notes.txt" / "runs" / "run.ckpt"
    with pytest.raises(NotADirectoryError) as info:
        train(path)
    assert one_line(info) == (
        f"`checkpoint` {path}: {tmp_path / 'notes.txt'} is a file, not a folder; choose a "
        "path in a folder."
    )


def test_a_checkpoint_that_is_a_folder_fails_before_training(tmp_path, no_training):
    with pytest.raises(IsADirectoryError, match="is a folder; pass a file path, e.g. "):
        train(tmp_path, overwrite=True)


def test_a_read_only_folder_fails_before_training(tmp_path, no_training):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        try:
            (folder / "probe").write_text("")
        except PermissionError:
            pass
        else:
            pytest.skip(
                "running as root (or on a file system without permissions): a "
                "read-only folder does not stop writes here"
            )
        with pytest.raises(PermissionError) as info:
            train(folder / "run.ckpt")
        assert one_line(info).startswith(f"`checkpoint` {folder / 'run.ckpt'} cannot be written")
        assert "choose a writable folder, or fix its permissions." in str(info.value)
    finally:
        folder.chmod(0o700)


def test_a_failed_save_mid_run_warns_once_and_returns_the_result(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    write = _fit.write
    calls = []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) >= 2:  # the first save succeeds, later ones fail
            raise OSError(28, "No space left on device")
        return write(*args, **kwargs)

    monkeypatch.setattr(_fit, "write", full_disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(path, num_steps=8, checkpoint_every=2)
    assert int(result.state.step) == 8 and len(calls) == 4
    ours = [w for w in caught if "could not save" in str(w.message)]
    assert len(ours) == 1
    message = str(ours[0].message)
    assert message == (
        f"fit could not save the checkpoint {path} at step(s) 4, 6, 8 (OSError: [Errno 28] "
        "No space left on device); it holds step 2. The returned result has the trained "
        "model: save it with save_checkpoint(path, result.state) or save_model."
    )
    assert sd.read_metadata(path)["step"] == 2


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


def test_the_next_save_removes_stale_temporaries_of_that_checkpoint_only(tmp_path):
    path = tmp_path / "run.ckpt"
    stale = [
        f".run.ckpt.{'a1b2c3d4'}.tmp",  # from an older version (no pid)
        f".run.ckpt.w{_dead_pid()}.k3j_x9q0.tmp",  # its writer was killed
        f".run.ckpt.w{os.getpid()}.zzzzzzzz.tmp",  # this process's, interrupted
    ]
    kept = [
        f".run.ckpt.w{os.getppid()}.abcdefgh.tmp",  # a live process may be writing it
        ".other.ckpt.a1b2c3d4.tmp",  # another checkpoint's
        ".run.ckpt.notes.tmp",  # not the pattern
        "run.ckpt.tmp",
        "run.ckpt.a1b2c3d4.tmp",
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x" * 10)
    sd.save_checkpoint(path, mlp())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["run.ckpt"])
    assert sd.load_checkpoint(path, mlp())[1] == {}


def test_fit_records_metadata_and_refuses_reserved_keys(tmp_path):
    path = tmp_path / "run.ckpt"
    train(path, metadata={"config": {"sde": "vp"}})
    assert sd.read_metadata(path)["config"] == {"sde": "vp"}
    with pytest.raises(ValueError, match=r"uses the key\(s\) \['losses'\]"):
        train(path, metadata={"losses": 1}, overwrite=True)
    with pytest.raises(TypeError, match="`metadata` must be JSON-able"):
        train(path, metadata={"array": jnp.zeros(2)}, overwrite=True)


def test_save_model_and_save_checkpoint_under_a_file_name_the_path(tmp_path):
    (tmp_path / "notes.txt").write_text("a file")
    path = tmp_path / "notes.txt" / "model.eqx"
    for save in (sd.save_model, sd.save_checkpoint):
        with pytest.raises(NotADirectoryError) as info:
            save(path, mlp())
        assert one_line(info) == (
            f"`path` {path}: {tmp_path / 'notes.txt'} is a file, not a folder; choose a path "
            "in a folder."
        )


KILLED_MID_SAVE = """
import os, sys, time
import jax.random as jr
import scoresde as sd
from scoresde import nn

def hang(fd):  # the data is written, not yet renamed: kill -9 lands here
    print("writing", flush=True)
    time.sleep(600)

os.fsync = hang
sd.save_checkpoint(sys.argv[1], nn.TimeMLP(2, width=8, depth=1, key=jr.key(0)))
"""


def test_a_save_killed_mid_write_leaves_a_temporary_the_next_save_removes(tmp_path):
    path = tmp_path / "run.ckpt"
    sd.save_checkpoint(path, mlp())
    before = path.read_bytes()
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_SAVE, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        child.kill()
        child.wait()
    left = [p.name for p in tmp_path.iterdir() if p.name != "run.ckpt"]
    assert len(left) == 1 and left[0].startswith(f".run.ckpt.w{child.pid}.")
    assert path.read_bytes() == before  # the last good checkpoint survived
    sd.save_checkpoint(path, mlp())
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]
