"""log_prob on image models: the divergence chosen by the network's cost, batches with a
progress bar, Hutchinson against the exact trace, and the CLI's dequantised bits/dim."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import scoresde as sd
from scoresde import nn
from scoresde._likelihood._log_prob import auto_divergence


SDE = sd.VPSDE()


def _perturbed(model, scale):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jr.split(jr.key(5), len(leaves))
    noisy = [x + scale * jr.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)]
    return eqx.combine(jax.tree.unflatten(treedef, noisy), static)


def small_image_model():
    net = nn.UNet((1, 4, 4), base_channels=4, channel_mults=(1,), time_embed_size=8, key=jr.key(0))
    # The network's weights perturbed, not the SDE's constants: those define the problem.
    return sd.NoisePrediction(_perturbed(net, 0.1), SDE)


def test_the_default_divergence_follows_the_networks_cost(monkeypatch):
    mlp = sd.NoisePrediction(nn.TimeMLP(2, key=jr.key(0)), SDE)
    assert isinstance(auto_divergence(SDE, mlp, jnp.zeros(2)), sd.ExactDivergence)
    mlp64 = sd.NoisePrediction(nn.TimeMLP(64, key=jr.key(0)), SDE)
    assert isinstance(auto_divergence(SDE, mlp64, jnp.zeros(64)), sd.ExactDivergence)
    unet = sd.NoisePrediction(nn.UNet((1, 8, 8), key=jr.key(0)), SDE)  # 64 dims, 1.6e7 FLOPs
    assert isinstance(auto_divergence(SDE, unet, jnp.zeros((1, 8, 8))), sd.HutchinsonDivergence)
    # Without a key, an automatic Hutchinson uses key 0 rather than failing.
    monkeypatch.setattr("scoresde._likelihood._log_prob.EXACT_MAX_FLOPS", 1.0)
    small = sd.NoisePrediction(nn.TimeMLP(2, width=8, depth=1, key=jr.key(0)), SDE)
    x = jr.normal(jr.key(1), (3, 2))
    lp = sd.log_prob(SDE, small, x, num_steps=4)
    probe = sd.log_prob(SDE, small, x, num_steps=4, key=jr.key(0))
    np.testing.assert_array_equal(lp, probe)
    exact = sd.log_prob(SDE, small, x, num_steps=4, divergence=sd.ExactDivergence())
    assert not np.array_equal(lp, exact)


def test_batches_do_not_change_the_result():
    model = sd.NoisePrediction(nn.TimeMLP(3, width=16, depth=1, key=jr.key(0)), SDE)
    x = jr.normal(jr.key(1), (5, 3))
    kwargs = dict(key=jr.key(2), divergence=sd.HutchinsonDivergence(), num_steps=8)
    whole = sd.log_prob(SDE, model, x, **kwargs)
    batched = sd.log_prob(SDE, model, x, batch_size=2, progress=True, **kwargs)
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-4)


def test_hutchinson_bits_per_dim_agrees_with_the_exact_trace():
    model = small_image_model()
    x = np.asarray(jr.randint(jr.key(3), (40, 1, 4, 4), 0, 256))
    exact = sd.bits_per_dim(
        SDE, model, x, key=jr.key(4), divergence=sd.ExactDivergence(), num_steps=6
    )
    hutch = sd.bits_per_dim(
        SDE, model, x, key=jr.key(4), divergence=sd.HutchinsonDivergence(), num_steps=6
    )
    # Same dequantisation noise (same key), so the difference is the estimator's alone.
    diff = np.asarray(hutch - exact)
    stderr = diff.std(ddof=1) / np.sqrt(len(diff))
    assert stderr > 0 and abs(diff.mean()) < 3 * stderr


def test_cli_digits_train_and_evaluate_report_dequantised_bits_and_frechet(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from scoresde._cli import main
    from scoresde._cli._commands import pixel_levels

    assert pixel_levels(np.arange(17.0).reshape(1, 1, 1, 17) / 16, None) == (17, 1 / 16)
    assert pixel_levels(np.arange(256.0).reshape(1, 1, 16, 16), None) == (256, 1.0)
    assert pixel_levels(np.random.default_rng(0).normal(size=(2, 1, 4, 4)), None) is None
    test = np.asarray(sd.datasets.load_digits(split="test")[0])
    np.save(tmp_path / "test.npy", test)
    argv = ["train", "--dataset", "digits", "--num-data", 32, "--out", tmp_path / "run"]
    argv += ["--steps", 2, "--batch-size", 16, "--base-channels", 4, "--channel-mults", "1"]
    assert main([str(a) for a in [*argv, "--no-progress"]]) == 0
    argv = ["evaluate", "--run", tmp_path / "run", "--data", tmp_path / "test.npy", "--num", 8]
    argv += ["--tol", 1e-3, "--sample-steps", 5, "--divergence", "hutchinson", "--no-progress"]
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    assert "dequantised (17 levels per pixel" in printed and "digits Fréchet distance" in printed
    report = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert report["num_bins"] == 17 and report["bits_per_dim"] > 0  # discrete: never negative
    # Two training steps are far from digits; the held-out rows are the floor.
    assert report["digits_frechet_distance"] > report["digits_frechet_floor"]
    argv_bad = [*argv[:-1], "--tol", 0]
    assert main([str(a) for a in argv_bad]) == 1
    assert "--tol must be > 0" in capsys.readouterr().err
