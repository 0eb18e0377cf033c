"""save_model / load_model, and load_checkpoint into a model built the same way."""

import os
import pathlib
import subprocess
import sys

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import scoresde as sd
from scoresde import nn


SHAPE = (1, 8, 8)


def unet(**kwargs):
    return nn.UNet(SHAPE, **{"base_channels": 8, "channel_mults": (1,), "key": jr.key(1), **kwargs})


def unet_model(**kwargs):
    return sd.NoisePrediction(unet(**kwargs), sd.VPSDE())


def arrays(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def assert_bitwise(a, b):
    la, lb = arrays(a), arrays(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)


def trained_unet():
    """A model whose weights are not the initial ones (the U-Net's output conv starts at
    zero), as training would leave them."""
    model = unet_model()
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jr.split(jr.key(5), len(leaves))
    noisy = [x + 0.05 * jr.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)]
    return eqx.combine(jax.tree.unflatten(treedef, noisy), static)


SAMPLE = """
import sys, numpy as np, jax.random as jr, diffrax as dfx
import scoresde as sd
model = sd.load_model(sys.argv[1])
x = sd.sample(model.sde, model, sd.ReverseSDE(dfx.Euler(), num_steps=5), (3, 1, 8, 8),
              key=jr.key(7))
np.save(sys.argv[2], np.asarray(x))
"""


def test_save_then_load_in_a_fresh_process_samples_bitwise(tmp_path):
    model = trained_unet()
    path = tmp_path / "model.eqx"
    sd.save_model(path, model, metadata={"note": "digits"})
    assert sd.read_metadata(path) == {"note": "digits"}
    x = sd.sample(
        model.sde, model, sd.ReverseSDE(dfx.Euler(), num_steps=5), (3, *SHAPE), key=jr.key(7)
    )
    script = tmp_path / "sample.py"
    script.write_text(SAMPLE)
    out = tmp_path / "x.npy"
    root = str(pathlib.Path(sd.__file__).parents[1])  # this checkout's scoresde
    env = {**os.environ, "PYTHONPATH": root}
    subprocess.run(
        [sys.executable, str(script), str(path), str(out)], check=True, env=env, cwd=root
    )
    assert np.array_equal(np.load(out), np.asarray(x))


def test_round_trip_is_bitwise_for_every_library_model(tmp_path):
    k = jr.key(3)
    models = [
        unet_model(num_classes=10),
        sd.EDMDenoiser(unet(), sd.VESDE(0.02, 30.0), sigma_data=0.3),
        sd.NoisePrediction(nn.TimeMLP(2, width=16, depth=2, num_fourier=3, key=k), sd.SubVPSDE()),
        sd.DirectScore(nn.NoiseConditionalMLP(2, width=16, condition_size=3, key=k)),
        nn.TimeFreeMLP(3, width=8, activation=jax.nn.tanh, key=k),
        nn.TimeMLP(2, width=8, activation=jnp.tanh, key=k),
    ]
    for i, model in enumerate(models):
        path = tmp_path / f"{i}.eqx"
        sd.save_model(path, model)
        loaded = sd.load_model(path)
        assert type(loaded) is type(model)
        assert jax.tree.structure(loaded) == jax.tree.structure(model)
        assert_bitwise(loaded, model)
        # The same file loads into a model built the same way, too.
        assert_bitwise(sd.load_checkpoint(path, model)[0], model)


@pytest.mark.parametrize(
    "other, message",
    [
        (
            lambda: sd.NoisePrediction(unet(base_channels=16), sd.VPSDE()),
            "model.net.base_channels is 8 in the file, 16 in the model",
        ),
        (
            lambda: sd.NoisePrediction(unet(), sd.VESDE()),
            "model.sde is scoresde.VPSDE in the file, scoresde.VESDE in the model",
        ),
        (
            lambda: sd.NoisePrediction(unet(), sd.VPSDE(beta_max=10.0)),
            "model.sde.beta_max is 20.0 in the file, 10.0 in the model",
        ),
        (
            lambda: sd.DirectScore(unet()),
            "model is scoresde.NoisePrediction in the file, scoresde.DirectScore in the model",
        ),
    ],
)
def test_a_file_of_another_model_is_refused_naming_the_difference(tmp_path, other, message):
    path = tmp_path / "model.eqx"
    sd.save_model(path, unet_model())
    with pytest.raises(sd.CheckpointError, match="saved from a different model: ") as info:
        sd.load_checkpoint(path, other())
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1


def test_another_activation_is_refused_though_the_arrays_match(tmp_path):
    path = tmp_path / "mlp.eqx"
    sd.save_model(path, nn.TimeMLP(2, width=8, key=jr.key(0)))
    with pytest.raises(sd.CheckpointError) as info:
        sd.load_checkpoint(path, nn.TimeMLP(2, width=8, activation=jax.nn.silu, key=jr.key(0)))
    assert "model.activation is jax.nn.relu in the file, jax.nn.silu in the model" in str(
        info.value
    )


def test_a_fit_checkpoint_loads_into_the_model_alone(tmp_path):
    """The issue's case: the model built the same way, not a TrainState, as the template."""
    model = sd.NoisePrediction(nn.TimeMLP(2, width=16, depth=1, key=jr.key(0)), sd.VPSDE())
    path = tmp_path / "run.ckpt"
    result = sd.fit(
        model,
        sd.DenoisingScoreMatching(model.sde),
        jr.normal(jr.key(0), (128, 2)),
        optimizer=optax.adam(1e-3),
        num_steps=10,
        batch_size=32,
        key=jr.key(1),
        checkpoint=path,
        progress=False,
    )
    loaded, meta = sd.load_checkpoint(path, model)
    assert meta["step"] == 10
    assert_bitwise(loaded, result.model)
    assert_bitwise(sd.load_model(path), result.model)
    # A template of the user's own (optimiser state over the SDE's constants too) says how.
    params = eqx.filter(model, eqx.is_inexact_array)
    like = sd.TrainState(
        model, model, optax.adam(1e-3).init(params), jnp.asarray(0), jr.key_data(jr.key(0))
    )
    with pytest.raises(sd.CheckpointError, match=r"load_checkpoint\(path, model\)"):
        sd.load_checkpoint(path, like)


class MyNet(eqx.Module):
    linear: eqx.nn.Linear

    def __init__(self, size, *, key):
        self.linear = eqx.nn.Linear(size + 1, size, key=key)

    def __call__(self, t, x):
        return self.linear(jnp.append(x, t))


def test_a_network_of_ones_own_with_hyperparameters(tmp_path):
    model = sd.NoisePrediction(MyNet(2, key=jr.key(3)), sd.VPSDE())
    path = tmp_path / "mine.eqx"
    with pytest.raises(TypeError, match=r"pass hyperparameters=\{...\}"):
        sd.save_model(path, model)
    with pytest.raises(ValueError, match="do not rebuild the model"):
        sd.save_model(path, model, hyperparameters={"size": 3})
    assert not path.exists()
    sd.save_model(path, model, hyperparameters={"size": 2})
    with pytest.raises(sd.CheckpointError, match=r"load_model\(path, classes=\[MyNet\]\)"):
        sd.load_model(path)
    assert_bitwise(sd.load_model(path, classes=[MyNet]), model)
    with pytest.raises(ValueError, match="drop it"):
        sd.save_model(path, unet_model(), hyperparameters={"size": 2})


def test_a_file_without_a_recipe_says_what_to_do(tmp_path):
    path = tmp_path / "plain.ckpt"
    model = unet_model()
    sd.save_checkpoint(path, model)
    with pytest.raises(sd.CheckpointError, match=r"load_checkpoint\(path, like\)"):
        sd.load_model(path)
    assert_bitwise(sd.load_checkpoint(path, model)[0], model)
