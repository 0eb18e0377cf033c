"""The command line's user errors: every one exits with status 1 and prints one line to
stderr (values in a config file included), never a traceback; a bug keeps its traceback.
A run directory whose config.toml was edited since training is refused."""

import hashlib
import json
import re
import subprocess
import sys

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import scoresde as sd
from scoresde._cli import _commands, main
from scoresde._cli._config import TRAIN_OPTIONS
from scoresde._cli._main import TRAIN_DEFAULTS, user_error


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_errors")
    np.save(d / "train.npy", np.asarray(sd.datasets.two_moons(128, key=jr.key(0))))
    argv = ["train", "--data", d / "train.npy", "--out", d / "run", "--steps", 4]
    assert run(*argv, "--batch-size", 32, "--width", 8, "--depth", 1, "--no-progress") == 0
    return d


def run(*argv):
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        return e.code


def error_line(capsys, *argv) -> str:
    capsys.readouterr()
    code = run(*argv)
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_every_train_option_has_a_check():
    assert set(TRAIN_OPTIONS) == set(TRAIN_DEFAULTS)


@pytest.mark.parametrize(
    "toml, message",
    [
        ('sde = "vpp"', 'sde must be one of "vp", "subvp", "ve", got "vpp" (did you mean "vp"?)'),
        (
            'objective = "dsn"',
            'objective must be one of "dsm", "ism", "ssm", "ncsn", got "dsn" (did you mean "dsm"?)',
        ),
        ('dataset = "moons"', 'got "moons" (did you mean "two_moons"?)'),
        ('steps = "10"', 'steps must be an integer >= 1, got "10"'),
        ("steps = 10.0", "steps must be an integer >= 1, got 10.0"),
        ("batch_size = true", "batch_size must be an integer >= 1, got true"),
        ('lr = "0.01"', 'lr must be a finite number > 0, got "0.01"'),
        ("lr = inf", "lr must be a finite number > 0, got Infinity"),
        ("channel_mults = [1, 0]", "channel_mults must be a non-empty list of integers >= 1"),
        ("condition_dropout = 1.5", "condition_dropout must be a number in [0, 1), got 1.5"),
        ("stepz = 3", "unknown option 'stepz' (did you mean 'steps'?); known: base_channels"),
        ("batch-size = 3", "unknown option 'batch-size' (did you mean 'batch_size'?)"),
        ('data = "x.npy"\ndataset = "circle"', "give data (a file) or dataset (a built-in"),
    ],
)
def test_config_file_values_are_checked(tmp_path, capsys, toml, message):
    config = tmp_path / "c.toml"
    config.write_text(toml + "\n")
    err = error_line(capsys, "train", "--config", config, "--out", tmp_path / "run")
    assert err.startswith(f"scoresde: error: {config}: ")
    assert message in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--sde", "vpp"], "argument --sde: invalid choice: 'vpp'"),
        (["train", "--steps", "ten"], "argument --steps: invalid int value: 'ten'"),
        (["train", "--steps", "0"], "--steps must be an integer >= 1, got 0"),
        (["train", "--lr", "inf"], "--lr must be a finite number > 0, got Infinity"),
        (["train", "--num-levels", "1"], "--num-levels must be an integer >= 2, got 1"),
        (["train", "--channel-mults", "1,x"], "argument --channel-mults: invalid _mults value"),
        (["train", "--seed", str(2**70)], "--seed must be an integer between -2**62 and 2**62"),
        (["sample", "--run", "{w}/run", "--seed", str(-(2**63))], "--seed must be an integer"),
        (
            ["train", "--data", "{w}/train.npy", "--out", "{w}/train.npy/run"],
            "--out {w}/train.npy/run: {w}/train.npy is a file, not a folder; choose another --out",
        ),
        (
            ["sample", "--run", "{w}/run", "--out", "{w}/train.npy/s.npy"],
            "--out {w}/train.npy/s.npy: {w}/train.npy is a file, not a folder",
        ),
        (["sample", "--run", "{w}/run", "--step-size", "nan"], "--step-size must be > 0"),
        (["evaluate", "--run", "{w}/run", "--data", "{w}/train.npy", "--tol", "-1"], "--tol"),
        (["train", "--out", "{w}/run", "--resume", "--lr", "0.1"], "so --lr cannot be given"),
    ],
)
def test_command_line_values_are_checked(work, capsys, argv, message):
    err = error_line(capsys, *[a.format(w=work) for a in argv])
    assert message.format(w=work) in err


def edited(work, tmp_path, old, new):
    """A copy of the trained run whose config.toml has `old` replaced by `new`."""
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("checkpoint.ckpt", "config.toml"):
        (copy / name).write_bytes((work / "run" / name).read_bytes())
    text = (copy / "config.toml").read_text()
    assert re.search(old, text, re.M)
    (copy / "config.toml").write_text(re.sub(old, new, text, flags=re.M))
    return copy


@pytest.mark.parametrize("command", ["sample", "evaluate", "resume"])
def test_a_run_whose_config_was_edited_to_another_sde_is_refused(work, tmp_path, capsys, command):
    copy = edited(work, tmp_path, '^sde = "vp"$', 'sde = "subvp"')
    argv = {
        "sample": ["sample", "--run", copy, "--num", 4, "--steps", 2],
        "evaluate": ["evaluate", "--run", copy, "--data", work / "train.npy", "--num", 4],
        "resume": ["train", "--out", copy, "--resume", "--steps", 6, "--no-progress"],
    }[command]
    err = error_line(capsys, *argv)
    assert err == (
        f'scoresde: error: {copy / "config.toml"} says sde = "subvp", but '
        f'{copy / "checkpoint.ckpt"} was trained with sde = "vp"; restore that value (the '
        "checkpoint defines the model), or train a new run"
    )


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "^width = 8$",
            "width = 16",
            "says width = 16, but {run}/checkpoint.ckpt was trained with width = 8",
        ),
        ('^objective = "dsm"$', 'objective = "ncsn"', 'trained with objective = "dsm"'),
        ('^sde = "vp"$', 'sde = "vpp"', 'sde must be one of "vp", "subvp", "ve", got "vpp"'),
        ("^data_shape = .*$", "", "config.toml has no data_shape (scoresde train writes it"),
        ("^data_shape = .*$", "data_shape = 2", "data_shape must be the shape of one sample"),
        ("^width = 8$", "widht = 8", "unknown option 'widht' (did you mean 'width'?)"),
    ],
)
def test_a_run_config_is_checked_before_loading(work, tmp_path, capsys, old, new, message):
    copy = edited(work, tmp_path, old, new)
    err = error_line(capsys, "sample", "--run", copy, "--num", 4, "--steps", 2)
    assert message.format(run=copy) in err


def test_an_older_run_without_recorded_values_is_checked_by_its_model(work, tmp_path, capsys):
    """Runs of earlier versions record no config values: the model config.toml builds is
    compared with the one the checkpoint records."""
    from scoresde._train import _checkpoint

    copy = edited(work, tmp_path, '^sde = "vp"$', 'sde = "subvp"')
    header, payload = _checkpoint.read_header(copy / "checkpoint.ckpt")
    del header["metadata"]["config"]
    head = json.dumps(header).encode()
    body = _checkpoint._MAGIC + len(head).to_bytes(8, "little") + head + payload
    (copy / "checkpoint.ckpt").write_bytes(body + hashlib.sha256(body).digest())
    err = error_line(capsys, "sample", "--run", copy, "--num", 4, "--steps", 2)
    assert err == (
        f"scoresde: error: {copy / 'config.toml'} builds another model than "
        f"{copy / 'checkpoint.ckpt'} holds (model.sde is scoresde.VPSDE in the file, "
        "scoresde.SubVPSDE in the model); restore config.toml as it was when training, or "
        "train a new run"
    )


def test_a_diverging_lr_is_one_line_naming_the_option(work, tmp_path, capsys):
    argv = ["train", "--data", work / "train.npy", "--out", tmp_path / "run", "--steps", 20]
    argv += ["--batch-size", 32, "--width", 8, "--depth", 1, "--lr", 1e30, "--no-progress"]
    err = error_line(capsys, *argv)
    assert err.startswith("scoresde: error: The training loss became non-finite at step ")
    assert err.endswith("(this run's lr is 1e+30); train again with a lower --lr, e.g. --lr 0.002")


def test_a_failed_save_mid_run_is_one_line_saying_what_the_run_holds(
    work, tmp_path, capsys, monkeypatch
):
    from scoresde._train import _fit

    write, calls = _fit.write, []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) >= 2:
            raise OSError(28, "No space left on device")
        return write(*args, **kwargs)

    monkeypatch.setattr(_fit, "write", full_disk)
    run_dir = tmp_path / "run"
    argv = ["train", "--data", work / "train.npy", "--out", run_dir, "--steps", 4]
    argv += ["--batch-size", 32, "--width", 8, "--depth", 1, "--checkpoint-every", 2]
    err = error_line(capsys, *argv, "--no-progress")
    assert err == (
        f"scoresde: error: training ran, but could not save the checkpoint "
        f"{run_dir / 'checkpoint.ckpt'} at step(s) 4 (OSError: [Errno 28] No space left on "
        "device); it holds step 2; free space or fix the folder, then continue with "
        f"scoresde train --out {run_dir} --resume"
    )


def test_a_bug_keeps_its_traceback(work, monkeypatch):
    """A TypeError from an operation in scoresde's code (not a `raise` of a validator) and
    a ValueError from numpy are bugs: they propagate, with their traceback."""

    def operation_on_a_wrong_type(args):
        _commands._diverged(FloatingPointError("x"), work / "nowhere", {"lr": "a"}, 2e-3)

    monkeypatch.setattr(_commands, "sample", operation_on_a_wrong_type)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["sample", "--run", str(work / "run")])

    def inside_numpy(args):
        np.zeros(-1)

    monkeypatch.setattr(_commands, "sample", inside_numpy)
    with pytest.raises(ValueError, match="negative dimensions"):
        main(["sample", "--run", str(work / "run")])


def test_what_counts_as_a_user_error():
    from scoresde._checks import check_num

    with pytest.raises(ValueError) as info:
        check_num("num_steps", 0)
    assert user_error(info.value) == "`num_steps` must be an integer >= 1, got 0."
    assert user_error(FileNotFoundError(2, "No such file", "x.npy")).startswith("[Errno 2]")
    with pytest.raises(ValueError) as info:
        np.zeros(-1)
    assert user_error(info.value) is None
    assert user_error(KeyError("data_shape")) is None
    checked = eqx.filter_jit(lambda x: eqx.error_if(x, x > 0, "x must be <= 0; pass less"))
    with pytest.raises(eqx.EquinoxRuntimeError) as info:
        checked(jnp.ones(()))
    assert user_error(info.value) == "x must be <= 0; pass less"
    with pytest.raises(eqx.EquinoxTracetimeError) as info:
        eqx.error_if(jnp.ones(()), True, "known at trace time; pass less")
    assert user_error(info.value) == "known at trace time; pass less"


def test_a_real_process_prints_one_line_and_exits_1(tmp_path):
    (tmp_path / "c.toml").write_text('sde = "vpp"\n')
    out = subprocess.run(
        [sys.executable, "-m", "scoresde", "train", "--config", tmp_path / "c.toml"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f'scoresde: error: {tmp_path / "c.toml"}: sde must be one of "vp", "subvp", "ve", '
        'got "vpp" (did you mean "vp"?)'
    ]


def test_only_the_values_of_the_model_trained_are_recorded(work):
    recorded = sd.read_metadata(work / "run" / "checkpoint.ckpt")["config"]
    assert recorded == {
        "sde": "vp",
        "objective": "dsm",
        "data_shape": [2],
        "width": 8,
        "depth": 1,
    }
