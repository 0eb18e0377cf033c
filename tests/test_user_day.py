"""The smaller fixes from a new user's day: keyed mixture sampling, no silent checkpoint
overwrite, Langevin without an SDE, readable comparison plots, the CLI's VP run with
annealed Langevin."""

import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np
import optax
import pytest

import scoresde as sd
from scoresde import nn, plotting
from scoresde._cli import main


def _mixture():
    return sd.GaussianMixtureScore(
        sd.VPSDE(),
        weights=jnp.array([0.5, 0.5]),
        means=jnp.array([[0.0, 0.0], [3.0, 3.0]]),
        covariances=jnp.stack([jnp.eye(2)] * 2),
    )


def test_mixture_sample_takes_key_as_a_keyword():
    score = _mixture()
    new = score.sample(5, 0.1, key=jr.key(1))
    assert new.shape == (5, 2)
    assert np.array_equal(new, score.sample(jr.key(1), 5, 0.1))  # the older form still works
    assert np.array_equal(score.sample(5, key=jr.key(1)), score.sample(5, t=0.0, key=jr.key(1)))
    with pytest.raises(TypeError, match="needs `key=`"):
        score.sample(5)
    labels = jnp.array([0, 1, 2])
    cond = sd.ClassConditionalMixture(score)
    assert np.array_equal(cond.sample(labels, key=jr.key(2)), cond.sample(jr.key(2), labels))


def test_fit_refuses_to_overwrite_a_checkpoint(tmp_path):
    path = tmp_path / "run.ckpt"
    kwargs = dict(
        optimizer=optax.adam(1e-3),
        num_steps=2,
        batch_size=8,
        key=jr.key(0),
        checkpoint=path,
        progress=False,
    )
    model = nn.TimeMLP(2, width=8, depth=1, key=jr.key(0))
    objective = sd.DenoisingScoreMatching(sd.VPSDE())
    data = jr.normal(jr.key(1), (16, 2))
    sd.fit(model, objective, data, **kwargs)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="resume=True .* overwrite=True"):
        sd.fit(model, objective, data, **kwargs)
    assert path.read_bytes() == before
    sd.fit(model, objective, data, overwrite=True, **{**kwargs, "num_steps": 3})
    assert sd.read_metadata(path)["step"] == 3


def test_langevin_needs_no_sde():
    x = sd.sample(
        None,
        lambda t, x: -(x - 3.0),  # a time-free score: N(3, I)
        sd.Langevin(num_steps=200, step_size=0.1),
        (1000, 2),
        key=jr.key(0),
    )
    assert np.all(np.abs(np.mean(x, 0) - 3.0) < 0.15)
    assert np.all(np.abs(np.std(x, 0) - 1.0) < 0.1)
    with pytest.raises(TypeError, match="`sde=None` works only with Langevin"):
        sd.sample(None, lambda t, x: -x, sd.ReverseSDE(num_steps=5), (4, 2), key=jr.key(0))


def test_comparison_shows_small_reference_sets_and_samples_past_the_edge():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(60, 2))
    wide = rng.normal(size=(3000, 2)) * 1.3  # just past the reference's box
    diverged = np.concatenate([rng.normal(size=(990, 2)), np.full((10, 2), 1e6)])
    fig = plotting.plot_comparison({"wide": wide, "diverged": diverged}, reference=reference)
    ref_ax, wide_ax = fig.axes[0], fig.axes[1]
    assert ref_ax.collections[0].get_sizes()[0] >= 16  # not a 1-point dot
    lo, hi = wide_ax.get_xlim()
    assert lo <= np.percentile(wide[:, 0], 0.5) and hi >= np.percentile(wide[:, 0], 99.5)
    assert hi - lo < 20  # the diverged panel does not squash the view
    plt.close(fig)


def test_cli_annealed_langevin_on_a_vp_run(tmp_path):
    """Regression: `sample --sampler annealed-langevin` on a VP run raised KeyError."""
    np.save(tmp_path / "x.npy", np.asarray(jr.normal(jr.key(0), (64, 2))))
    argv = ["train", "--data", tmp_path / "x.npy", "--out", tmp_path / "run", "--steps", 5]
    argv += ["--width", 8, "--depth", 1, "--batch-size", 32, "--no-progress"]
    assert main([str(a) for a in argv]) == 0
    argv = ["sample", "--run", tmp_path / "run", "--sampler", "annealed-langevin"]
    argv += ["--num", 8, "--steps", 20, "--out", tmp_path / "s.npy"]
    assert main([str(a) for a in argv]) == 0
    assert np.isfinite(np.load(tmp_path / "s.npy")).all()
