"""The command line end to end on a tiny data set: train, resume, sample, evaluate, errors."""

import json
import subprocess
import sys

import jax.random as jr
import numpy as np
import pytest
import tomllib

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
        (["train", "--sde", "foo"], 1, "invalid choice"),
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
    try:
        result = main(argv)
    except SystemExit as e:  # argparse's errors: also one line, status 1
        result = e.code
    err = capsys.readouterr().err.strip()
    assert result == code
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_python_dash_m_help_explains_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "scoresde", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in ["--data", "--dataset", "--sde", "--objective", "--steps", "--out", "--resume"]:
        assert option in out


# Class-conditional runs: --labels, --condition-dropout, sample --label/--guidance.

CENTRES = np.array([[-2.0, -1.5], [2.0, -1.5], [0.0, 2.0]])


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """Three labelled Gaussian blobs (.npy + labels .npy, and the .npz form), bad label
    files, and a conditional run trained long enough to tell the classes apart."""
    d = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    data = (CENTRES[labels] + 0.3 * rng.standard_normal((600, 2))).astype(np.float32)
    np.save(d / "x.npy", data)
    np.save(d / "y.npy", labels)
    np.save(d / "y_float.npy", labels.astype(np.float64))
    np.savez(d / "xy.npz", data=data, labels=labels)
    np.save(d / "y_2d.npy", labels.reshape(300, 2))
    np.save(d / "y_frac.npy", labels + 0.5)
    np.save(d / "y_neg.npy", labels - 1)
    np.save(d / "y_short.npy", labels[:100])
    np.save(d / "y_str.npy", labels.astype(str))
    np.save(d / "y_big.npy", labels + 3)
    np.save(d / "y_eval_short.npy", labels[:10])
    argv = ["--width", 64, "--depth", 2, "--batch-size", 128, "--no-progress"]
    labelled = ["--data", d / "x.npy", "--labels", d / "y.npy", "--checkpoint-every", 100]
    assert run("train", *labelled, "--out", d / "cond", "--steps", 150, *argv) == 0
    assert run("train", "--data", d / "x.npy", "--out", d / "plain", "--steps", 5, *argv) == 0
    return d


def _nearest_centre(samples):
    return np.argmin(np.linalg.norm(samples[:, None] - CENTRES, axis=-1), axis=1)


def test_conditional_run_records_labels_and_samples_each_class(blobs, capsys):
    config = tomllib.loads((blobs / "cond" / "config.toml").read_text())
    assert config["num_classes"] == 3 and config["condition_dropout"] == 0.1
    assert config["labels"] == str(blobs / "y.npy")
    for extra in [[], ["--guidance", 2]]:
        out = blobs / "class1.npy"
        argv = ["sample", "--run", blobs / "cond", "--label", 1, *extra, "--num", 128]
        assert run(*argv, "--steps", 50, "--out", out) == 0
        x = np.load(out)
        assert x.shape == (128, 2) and np.isfinite(x).all()
        assert (blobs / "class1.png").stat().st_size > 0
        # The class mean lies nearest blob 1's centre, and most samples do too.
        assert np.argmin(np.linalg.norm(CENTRES - x.mean(0), axis=1)) == 1
        assert np.mean(_nearest_centre(x) == 1) > 0.8
    assert "of class 1 (guidance 2)" in capsys.readouterr().out
    # No --label: the unconditional model, through the null label, reaches every blob.
    assert run("sample", "--run", blobs / "cond", "--num", 128, "--steps", 50) == 0
    x = np.load(blobs / "cond" / "samples.npy")
    assert x.shape == (128, 2) and np.isfinite(x).all()
    assert set(_nearest_centre(x)) == {0, 1, 2}


@pytest.mark.parametrize(
    "sampler",
    [
        "reverse-sde --solver adaptive",
        "pf-ode",
        "pf-ode --solver adaptive",
        "annealed-langevin",
        "pc",
        "langevin",
    ],
)
def test_every_sampler_takes_a_label_and_guidance(blobs, sampler):
    out = blobs / "any.npy"
    argv = ["sample", "--run", blobs / "cond", "--sampler", *sampler.split()]
    assert run(*argv, "--label", 2, "--guidance", 1, "--num", 8, "--steps", 10, "--out", out) == 0
    x = np.load(out)
    assert x.shape == (8, 2) and np.isfinite(x).all()


def test_conditional_resume_reloads_the_labels(blobs, capsys):
    argv = ["--width", 16, "--depth", 1, "--batch-size", 64, "--no-progress"]
    # The .npz form: an array named `labels` beside `data`.
    out = blobs / "npz"
    argv_npz = ["--data", blobs / "xy.npz", "--condition-dropout", 0.2, *argv]
    assert run("train", *argv_npz, "--out", out, "--steps", 10) == 0
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["num_classes"] == 3 and config["labels"] == str(blobs / "xy.npz")
    assert config["condition_dropout"] == 0.2
    assert run("train", "--out", out, "--resume", "--steps", 20, "--no-progress") == 0
    assert sd.read_metadata(out / "checkpoint.ckpt")["step"] == 20
    # Floats that hold integers are labels too; resuming reads the same file again.
    out, labels = blobs / "floats", blobs / "y_moved.npy"
    np.save(labels, np.load(blobs / "y_float.npy"))
    source = ["--data", blobs / "x.npy", "--labels", labels]
    assert run("train", *source, "--out", out, "--steps", 5, *argv) == 0
    assert tomllib.loads((out / "config.toml").read_text())["num_classes"] == 3
    labels.unlink()
    capsys.readouterr()
    assert run("train", "--out", out, "--resume", "--steps", 10, "--no-progress") == 1
    err = capsys.readouterr().err.strip()
    assert f"--labels: no labels file at {labels}" in err and len(err.splitlines()) == 1


def test_evaluate_a_conditional_run(blobs, capsys):
    argv = ["evaluate", "--run", blobs / "cond", "--data", blobs / "x.npy", "--num", 32]
    capsys.readouterr()
    assert run(*argv) == 0
    assert "unconditional model (null label 3)" in capsys.readouterr().out
    report = json.loads((blobs / "cond" / "evaluation.json").read_text())
    assert np.isfinite(report["log_likelihood_nats"]) and "null label" in report["condition"]
    assert run(*argv, "--labels", blobs / "y.npy") == 0
    assert "conditioned on each row's label" in capsys.readouterr().out
    conditional = json.loads((blobs / "cond" / "evaluation.json").read_text())
    # Knowing the blob makes the data more likely.
    assert conditional["log_likelihood_nats"] > report["log_likelihood_nats"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--labels", "{b}/nope.npy"], "--labels: no labels file"),
        (["train", "--labels", "{b}/y_2d.npy"], "--labels {b}/y_2d.npy has shape (300, 2)"),
        (["train", "--labels", "{b}/y_frac.npy"], "--labels {b}/y_frac.npy holds non-integer"),
        (["train", "--labels", "{b}/y_neg.npy"], "--labels {b}/y_neg.npy holds negative"),
        (["train", "--labels", "{b}/y_short.npy"], "--labels {b}/y_short.npy has 100 labels"),
        (["train", "--labels", "{b}/y_str.npy"], "--labels {b}/y_str.npy has dtype"),
        (["train", "--labels", "{b}/y.npy", "--objective", "ism"], "--labels: objective ism"),
        (["train", "--condition-dropout", "0.1"], "--condition-dropout needs class labels"),
        (["train", "--labels", "{b}/y.npy", "--condition-dropout", "1"], "--condition-dropout"),
        (["train", "--dataset", "two_moons", "--labels", "{b}/y.npy"], "--labels needs --data"),
        (["sample", "--run", "{b}/plain", "--label", "0"], "--label: this run is unconditional"),
        (["sample", "--run", "{b}/plain", "--guidance", "1"], "--guidance: this run is uncond"),
        (["sample", "--run", "{b}/cond", "--label", "3"], "--label must lie in [0, 2]"),
        (["sample", "--run", "{b}/cond", "--label", "-1"], "--label must lie in [0, 2]"),
        (["sample", "--run", "{b}/cond", "--guidance", "2"], "--guidance needs --label"),
        (["sample", "--run", "{b}/cond", "--label", "0", "--guidance", "-1"], "--guidance must"),
        (["sample", "--run", "{b}/cond", "--label", "0", "--guidance", "nan"], "--guidance must"),
        (["evaluate", "--run", "{b}/plain", "--labels", "{b}/y.npy"], "--labels: this run is"),
        (["evaluate", "--run", "{b}/cond", "--labels", "{b}/y_big.npy"], "but this run has 3"),
        (["evaluate", "--run", "{b}/cond", "--labels", "{b}/y_eval_short.npy"], "has 10 labels"),
        (["evaluate", "--run", "{b}/cond", "--labels", "{b}/nope.npy"], "--labels: no labels"),
    ],
)
def test_bad_labels_exit_1_with_one_line_naming_the_option(blobs, capsys, argv, message):
    argv = [a.format(b=blobs) for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(blobs / "never"), "--steps", "5", "--batch-size", "64"]
        if "--dataset" not in argv:
            argv += ["--data", str(blobs / "x.npy")]
    if argv[0] == "evaluate":
        argv += ["--data", str(blobs / "x.npy"), "--num", "8"]
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert message.format(b=blobs) in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (blobs / "never" / "checkpoint.ckpt").exists()


def test_help_explains_the_label_options(capsys):
    help_of = {}
    for command in ["train", "sample", "evaluate"]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        help_of[command] = capsys.readouterr().out
    assert "--labels" in help_of["train"] and "--condition-dropout" in help_of["train"]
    assert "--label" in help_of["sample"] and "--guidance" in help_of["sample"]
    assert "--labels" in help_of["evaluate"]
