"""The command line end to end on a tiny data set: train, resume, sample, evaluate, errors."""

import json
import subprocess
import sys

import jax.random as jr
import numpy as np
import pytest

import scoresde as sd
from scoresde._cli import main


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    data = np.asarray(sd.datasets.two_moons(600, key=jr.key(0)))
    np.save(d / "train.npy", data[:500])
    np.savetxt(d / "held.csv", data[500:], delimiter=",")
    return d


def run(*argv):
    return main([str(a) for a in argv])


def test_train_resume_sample_evaluate(workdir, capsys):
    out = workdir / "run"
    args = ["train", "--data", workdir / "train.npy", "--out", out, "--no-progress"]
    assert run(*args, "--steps", 50, "--batch-size", 64, "--checkpoint-every", 25) == 0
    for name in ["checkpoint.ckpt", "loss.png", "config.toml"]:
        assert (out / name).stat().st_size > 0
    assert sd.read_metadata(out / "checkpoint.ckpt")["step"] == 50
    assert run("train", "--out", out, "--resume", "--steps", 80, "--no-progress") == 0
    meta = sd.read_metadata(out / "checkpoint.ckpt")
    assert meta["step"] == 80 and len(meta["losses"]) == 80
    assert run("sample", "--run", out, "--num", 64, "--steps", 50, "--out", workdir / "s.npy") == 0
    samples = np.load(workdir / "s.npy")
    assert samples.shape == (64, 2) and np.isfinite(samples).all()
    assert (workdir / "s.png").stat().st_size > 0
    capsys.readouterr()
    assert run("evaluate", "--run", out, "--data", workdir / "held.csv", "--num", 64) == 0
    printed = capsys.readouterr().out
    assert "log-likelihood" in printed and "energy distance" in printed
    report = json.loads((out / "evaluation.json").read_text())
    assert np.isfinite(report["log_likelihood_nats"]) and report["num"] == 64


def test_the_run_directory_records_the_exact_config(workdir):
    config = (workdir / "run" / "config.toml").read_text()
    assert 'objective = "dsm"' in config and "steps = 80" in config and "format = 1" in config


def test_config_file_and_time_free_runs(workdir, capsys):
    (workdir / "c.toml").write_text('objective = "ism"\nsteps = 30\nbatch_size = 50\n')
    out = workdir / "ism"
    argv = ["train", "--config", workdir / "c.toml", "--data", workdir / "train.npy"]
    assert run(*argv, "--out", out, "--no-progress") == 0
    assert 'objective = "ism"' in (out / "config.toml").read_text()
    capsys.readouterr()
    assert run("sample", "--run", out, "--sampler", "pf-ode") == 1
    assert "time-free" in capsys.readouterr().err
    assert run("sample", "--run", out, "--num", 32, "--steps", 20) == 0


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["train", "--data", "missing.npy", "--out", "x"], 1, "no data file"),
        (["train", "--sde", "foo"], 2, "invalid choice"),
        (["train", "--data", "{w}/bad.npy", "--out", "{w}/bad"], 1, "expected (n, d)"),
        (["train", "--data", "{w}/train.npy", "--steps", "0", "--out", "{w}/z"], 1, "steps"),
        (["sample", "--run", "{w}/nowhere"], 1, "not a run directory"),
        (["sample", "--run", "{w}/old"], 1, "incompatible"),
        (["evaluate", "--run", "{w}/run", "--data", "{w}/bad.npy"], 1, "expected (n, d)"),
        (["train", "--config", "{w}/typo.toml", "--out", "{w}/t"], 1, "unknown option"),
        (["train", "--data", "{w}/train.npy", "--out", "{w}/run"], 1, "already holds a run"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(workdir, capsys, argv, code, message):
    np.save(workdir / "bad.npy", np.zeros(10))
    (workdir / "old").mkdir(exist_ok=True)
    (workdir / "old" / "config.toml").write_text("format = 0\n")
    (workdir / "typo.toml").write_text("stepz = 3\n")
    argv = [a.format(w=workdir) for a in argv]
    capsys.readouterr()
    with pytest.raises(SystemExit) if code == 2 else _no_raise() as caught:
        result = main(argv)
    result = caught.value.code if code == 2 else result
    err = capsys.readouterr().err.strip()
    assert result == code
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


class _no_raise:
    value = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_python_dash_m_help_explains_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "scoresde", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in ["--data", "--dataset", "--sde", "--objective", "--steps", "--out", "--resume"]:
        assert option in out
