"""fit: checkpoints, exact resume, EMA, frozen SDEs, and clear errors on bad input."""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import scoresde as sd
from scoresde import nn


DATA = jr.normal(jr.key(0), (500, 2))


def run(path=None, num_steps=60, model=None, **kwargs):
    kwargs = {
        "optimizer": optax.adam(1e-3),
        "batch_size": 64,
        "key": jr.key(1),
        "steps_per_dispatch": 20,
        "progress": False,
        **kwargs,
    }
    model = nn.TimeMLP(2, width=32, depth=2, key=jr.key(2)) if model is None else model
    objective = sd.DenoisingScoreMatching(sd.VPSDE())
    return sd.fit(model, objective, DATA, num_steps=num_steps, checkpoint=path, **kwargs)


def assert_trees_equal(a, b):
    la, lb = (
        jax.tree.leaves(eqx.filter(a, eqx.is_array)),
        jax.tree.leaves(eqx.filter(b, eqx.is_array)),
    )
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_checkpoint_round_trip_is_bitwise(tmp_path):
    result = run(tmp_path / "run.ckpt")
    template = run(num_steps=1).state  # same structure, different values
    loaded, meta = sd.load_checkpoint(tmp_path / "run.ckpt", template)
    assert_trees_equal(loaded, result.state)
    assert meta["step"] == 60 and len(meta["losses"]) == 60


def test_resume_equals_uninterrupted_training(tmp_path):
    straight = run(tmp_path / "straight.ckpt", num_steps=100, checkpoint_every=40)
    path = tmp_path / "run.ckpt"
    run(path, num_steps=40)  # "interrupted" after 40 steps
    resumed = run(path, num_steps=100, resume=True, checkpoint_every=40)
    assert_trees_equal(resumed.state, straight.state)
    np.testing.assert_array_equal(resumed.losses, straight.losses)


@pytest.mark.parametrize("steps_per_dispatch", [7, 1])  # 1: one step, no loop around it
def test_fused_steps_do_not_change_the_result(steps_per_dispatch):
    a = run(num_steps=60, steps_per_dispatch=60)
    b = run(num_steps=60, steps_per_dispatch=steps_per_dispatch)
    leaves = zip(
        jax.tree.leaves(eqx.filter(a.raw_model, eqx.is_array)),
        jax.tree.leaves(eqx.filter(b.raw_model, eqx.is_array)),
        strict=True,
    )
    for x, y in leaves:
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5)


def test_default_steps_per_dispatch_is_one_for_convolutions_on_cpu():
    from scoresde._train._fit import _default_steps_per_dispatch

    mlp = nn.TimeMLP(2, key=jr.key(0))
    unet = nn.UNet((1, 8, 8), key=jr.key(0))
    on_cpu = jax.default_backend() == "cpu"
    assert _default_steps_per_dispatch(mlp, None) == 100
    assert _default_steps_per_dispatch(unet, None) == (1 if on_cpu else 100)
    assert _default_steps_per_dispatch(sd.NoisePrediction(unet, sd.VPSDE()), None) == (
        1 if on_cpu else 100
    )


def test_truncated_or_corrupt_checkpoint_raises(tmp_path):
    path = tmp_path / "run.ckpt"
    result = run(path, num_steps=20)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(sd.CheckpointError, match="truncated"):
        sd.load_checkpoint(path, result.state)
    flipped = bytearray(raw)
    flipped[-10] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(sd.CheckpointError, match="corrupt"):
        sd.load_checkpoint(path, result.state)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(sd.CheckpointError, match="not a scoresde checkpoint"):
        sd.load_checkpoint(path, result.state)


def test_checkpoint_of_another_model_raises(tmp_path):
    path = tmp_path / "run.ckpt"
    run(path, num_steps=20)
    wider = nn.TimeMLP(2, width=64, depth=2, key=jr.key(2))
    with pytest.raises(sd.CheckpointError, match="different model"):
        run(path, num_steps=40, model=wider, resume=True)


def test_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    result = run(path, num_steps=20)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        sd.save_checkpoint(path, result.state, metadata={"step": 99})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]


def test_ema_and_raw_models():
    with_ema = run(num_steps=40, ema_rate=0.9)
    no_ema = run(num_steps=40, ema_rate=None)
    assert with_ema.model is with_ema.state.ema_model
    assert no_ema.model is no_ema.raw_model
    assert_trees_equal(with_ema.raw_model, no_ema.raw_model)
    first = lambda m: m.mlp.layers[0].weight
    assert not np.allclose(first(with_ema.model), first(with_ema.raw_model))


def test_sde_inside_the_model_is_not_trained():
    sde = sd.VPSDE()
    model = sd.NoisePrediction(nn.TimeMLP(2, width=32, depth=2, key=jr.key(2)), sde)
    result = run(num_steps=20, model=model, optimizer=optax.adamw(1e-2, weight_decay=0.5))
    assert_trees_equal(result.raw_model.sde, sde)
    assert not np.allclose(
        result.raw_model.net.mlp.layers[0].weight, model.net.mlp.layers[0].weight
    )


def test_loss_history_and_training_progress():
    result = run(num_steps=600, steps_per_dispatch=200)
    assert result.losses.shape == (600,)
    assert result.losses[-100:].mean() < 0.8 * result.losses[:20].mean()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"data": DATA.at[3, 1].set(jnp.nan)}, ValueError, "NaN"),
        ({"data": DATA[:, 0]}, ValueError, "data"),
        ({"batch_size": 501}, ValueError, "batch_size"),
        ({"num_steps": 0}, ValueError, "num_steps"),
        ({"optimizer": "adam"}, TypeError, "optax"),
        ({"ema_rate": 1.0}, ValueError, "ema_rate"),
        ({"resume": True}, ValueError, "checkpoint"),
        ({"model": nn.TimeMLP(3, key=jr.key(0))}, ValueError, r"\(2,\)"),
    ],
)
def test_bad_input_raises_at_the_call(kwargs, error, match):
    args = {
        "model": nn.TimeMLP(2, width=32, key=jr.key(0)),
        "data": DATA,
        "optimizer": optax.adam(1e-3),
        "num_steps": 10,
        "batch_size": 64,
        "key": jr.key(0),
        "progress": False,
        **kwargs,
    }
    model, data = args.pop("model"), args.pop("data")
    with pytest.raises(error, match=match):
        sd.fit(model, sd.DenoisingScoreMatching(sd.VPSDE()), data, **args)


def test_diverging_training_raises():
    with pytest.raises(FloatingPointError, match="learning rate"):
        run(num_steps=200, optimizer=optax.sgd(1e6))


def test_resume_without_a_checkpoint_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        run(tmp_path / "missing.ckpt", resume=True)
