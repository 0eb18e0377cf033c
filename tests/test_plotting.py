"""`scoresde.plotting`: every figure renders headless, and the heatmap puts mass where the
samples are."""

import os

import diffrax as dfx
import jax.numpy as jnp
import jax.random as jr
import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import mixture_params
from matplotlib.figure import Figure
from PIL import Image

import scoresde as sd
from scoresde import plotting
from scoresde.plotting import (
    animate_reverse,
    plot_comparison,
    plot_heatmap,
    plot_loss,
    plot_scatter,
    plot_score,
    plot_trajectories,
    save,
)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    before = set(plt.get_fignums())
    yield
    for num in set(plt.get_fignums()) - before:
        plt.close(num)


def _points(n=500, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2))


def _trajectory(n=30, k=6, seed=0):
    steps = np.random.default_rng(seed).normal(scale=0.2, size=(n, k, 2))
    return np.cumsum(steps, axis=1)


def _assert_png(fig, path):
    assert isinstance(fig, Figure)
    out = save(fig, path)
    assert out == path and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) > 50
    assert fig.number not in plt.get_fignums()  # save() closes the figure


def _pixel_centres(lo, hi, resolution):
    return lo + (np.arange(resolution) + 0.5) * (hi - lo) / resolution


# ----------------------------------------------------------------------------------------
# Every function renders
# ----------------------------------------------------------------------------------------


def test_heatmap_png(tmp_path):
    _assert_png(plot_heatmap(_points()), tmp_path / "heatmap.png")


def test_scatter_png_with_reference_underneath(tmp_path):
    fig = plot_scatter(_points(), reference=_points(200, seed=1), area=(-3, 3))
    ax = fig.axes[0]
    ref, samples = ax.collections
    assert ref.get_zorder() < samples.get_zorder()
    assert ref.get_offsets().shape == (200, 2) and samples.get_offsets().shape == (500, 2)
    assert ax.get_xlim() == (-3, 3) and ax.get_ylim() == (-3, 3)
    _assert_png(fig, tmp_path / "scatter.png")


def test_score_png_and_arrows_are_the_score(tmp_path):
    fig = plot_score(lambda t, x: -x / (1.0 + t), 1.0, area=(-2, 2), num=5)
    (quiver,) = fig.axes[0].collections
    grid = np.asarray(quiver.get_offsets())
    assert grid.shape == (25, 2)
    np.testing.assert_allclose(quiver.U, -grid[:, 0] / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(quiver.V, -grid[:, 1] / 2, rtol=1e-5, atol=1e-6)
    _assert_png(fig, tmp_path / "score.png")


def test_score_of_an_equinox_module(tmp_path, vp):
    w, mu, cov = mixture_params()
    score = sd.GaussianMixtureScore(vp, weights=w, means=mu, covariances=cov)
    fig = plot_score(score, 0.1, num=8)
    (quiver,) = fig.axes[0].collections
    x = jnp.asarray(quiver.get_offsets()[3], jnp.float32)
    np.testing.assert_allclose([quiver.U[3], quiver.V[3]], score(0.1, x), rtol=1e-4, atol=1e-5)
    _assert_png(fig, tmp_path / "score_mixture.png")


def test_trajectories_png(tmp_path):
    traj = _trajectory(n=30, k=6)
    fig = plot_trajectories(traj, np.linspace(1.0, 1e-3, 6), num=10, reference=_points(100))
    ax = fig.axes[0]
    starts = [c for c in ax.collections if c.get_label().startswith("start")]
    ends = [c for c in ax.collections if c.get_label().startswith("end")]
    np.testing.assert_allclose(starts[0].get_offsets(), traj[:10, 0])
    np.testing.assert_allclose(ends[0].get_offsets(), traj[:10, -1])
    assert "t = 1" in starts[0].get_label() and "t = 0.001" in ends[0].get_label()
    _assert_png(fig, tmp_path / "trajectories.png")
    # Without times, and more paths asked for than there are.
    _assert_png(plot_trajectories(traj[:3], num=20), tmp_path / "few.png")


def test_loss_png_log_scale_and_running_mean(tmp_path):
    history = np.exp(-np.linspace(0, 3, 400)) + np.random.default_rng(0).uniform(0, 0.1, 400)
    fig = plot_loss(jnp.asarray(history), smooth=20)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    raw, mean = ax.get_lines()
    assert len(mean.get_xdata()) == 400 - 20 + 1
    np.testing.assert_allclose(mean.get_ydata()[0], history[:20].mean())
    _assert_png(fig, tmp_path / "loss.png")
    # A loss that goes negative (e.g. implicit score matching) stays linear.
    fig = plot_loss(history - 0.5)
    assert fig.axes[0].get_yscale() == "linear"
    _assert_png(fig, tmp_path / "loss_linear.png")


def test_comparison_png_titles_and_reference_panel(tmp_path):
    samples = {"Euler": _points(300, 1), "Heun": _points(300, 2) + 1.0, "PF-ODE": _points(50, 3)}
    fig = plot_comparison(samples, reference=_points(400), metrics={"Heun": "MMD 0.012"})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["reference", "Euler", "Heun\nMMD 0.012", "PF-ODE"]
    _assert_png(fig, tmp_path / "comparison.png")
    fig = plot_comparison(samples, kind="heatmap", area=(-3, 3), ncols=2)
    assert sum(ax.get_visible() for ax in fig.axes) == 3
    assert all(len(ax.images) == 1 for ax in fig.axes if ax.get_visible())
    _assert_png(fig, tmp_path / "comparison_heatmap.png")


def test_draws_on_a_given_axes():
    fig, axes = plt.subplots(1, 3)
    assert plot_scatter(_points(), ax=axes[0]) is fig
    assert plot_heatmap(_points(), ax=axes[1], resolution=32) is fig
    assert plot_loss([3.0, 2.0, 1.0], ax=axes[2]) is fig
    assert len(fig.axes) == 3


def test_animation_is_a_gif_with_one_frame_per_snapshot(tmp_path):
    traj = _trajectory(n=40, k=7)
    path = tmp_path / "anim" / "reverse.gif"
    figs = set(plt.get_fignums())
    out = animate_reverse(traj, path, ts=np.linspace(1.0, 0.01, 7), fps=5, reference=_points(50))
    assert out == path and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 7
        assert im.info["duration"] == 200
    assert set(plt.get_fignums()) == figs  # closed its own figure
    assert os.listdir(path.parent) == ["reverse.gif"]  # no temporary file left


def test_sample_result_feeds_trajectory_plots(tmp_path, vp):
    """The shapes `sample(..., saveat=k, return_info=True)` returns are what the plots take."""
    w, mu, cov = mixture_params()
    score = sd.GaussianMixtureScore(vp, weights=w, means=mu, covariances=cov)
    out = sd.sample(
        vp,
        score,
        sd.ReverseSDE(dfx.Euler(), num_steps=20),
        (64, 2),
        key=jr.PRNGKey(0),
        saveat=5,
        return_info=True,
    )
    _assert_png(plot_trajectories(out.trajectory, out.ts), tmp_path / "traj.png")
    path = animate_reverse(out.trajectory, tmp_path / "traj.gif", ts=out.ts)
    with Image.open(path) as im:
        assert im.n_frames == 5


# ----------------------------------------------------------------------------------------
# The heatmap is a kernel density estimate
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [(0.5, -1.0), (-1.7, 1.3)])
def test_heatmap_peak_is_where_the_samples_are(where):
    samples = jnp.tile(jnp.asarray(where), (100, 1))
    fig = plot_heatmap(samples, area=(-2, 2), resolution=64)
    hm = np.asarray(fig.axes[0].images[0].get_array())
    iy, ix = np.unravel_index(np.argmax(hm), hm.shape)
    centres = _pixel_centres(-2, 2, 64)
    pixel = 4 / 64
    assert abs(centres[ix] - where[0]) <= pixel / 2 + 1e-9
    assert abs(centres[iy] - where[1]) <= pixel / 2 + 1e-9


def test_heatmap_is_a_density_with_the_right_weights():
    """Two well-separated clusters with 3:1 counts: the image integrates to 1 and the mass in
    each half follows the counts."""
    samples = np.concatenate([np.tile([-1.0, 0.0], (300, 1)), np.tile([1.0, 0.0], (100, 1))])
    fig = plot_heatmap(samples, area=((-2, 2), (-1, 1)), resolution=128, bandwidth=0.1)
    hm = np.asarray(fig.axes[0].images[0].get_array())
    assert hm.shape == (128, 128)
    cell = (4 / 128) * (2 / 128)
    np.testing.assert_allclose(hm.sum() * cell, 1.0, rtol=1e-3)
    left, right = hm[:, :64].sum() * cell, hm[:, 64:].sum() * cell
    np.testing.assert_allclose([left, right], [0.75, 0.25], atol=1e-3)
    assert fig.axes[0].images[0].get_extent() == [-2, 2, -1, 1]


def test_chunked_kde_matches_brute_force():
    """Several chunks, a ragged last one: the same as summing every kernel directly."""
    x = np.random.default_rng(0).uniform(-2, 2, size=(5000, 2))
    box, res, h = (-2.0, 2.0, -2.0, 2.0), 24, 0.2
    got = plotting._kde_grid(x, box, res, h, chunk=1024)
    c = _pixel_centres(-2, 2, res)
    gx, gy = np.meshgrid(c, c)  # [y, x]
    d2 = (gx[..., None] - x[:, 0]) ** 2 + (gy[..., None] - x[:, 1]) ** 2
    want = np.exp(-d2 / (2 * h**2)).sum(-1) / (len(x) * 2 * np.pi * h**2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_numpy_and_jax_inputs_agree():
    x = _points(300)
    a = plot_heatmap(x, resolution=32).axes[0].images[0].get_array()
    b = plot_heatmap(jnp.asarray(x), resolution=32).axes[0].images[0].get_array()
    np.testing.assert_allclose(a, b, rtol=1e-5)


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(10, 3), (10,), (10, 2, 1), (0, 2)])
@pytest.mark.parametrize("fn", [plot_heatmap, plot_scatter], ids=lambda f: f.__name__)
def test_samples_must_be_2d_points(fn, shape):
    with pytest.raises(ValueError, match="`samples`"):
        fn(np.zeros(shape))


def test_reference_shape_is_checked():
    with pytest.raises(ValueError, match=r"`reference`.*\(10, 3\)"):
        plot_scatter(_points(), reference=np.zeros((10, 3)))


def test_trajectory_shape_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"`trajectory`.*\(30, 2\)"):
        plot_trajectories(_points(30))
    with pytest.raises(ValueError, match="`ts`"):
        plot_trajectories(_trajectory(k=6), ts=np.linspace(1, 0, 5))
    with pytest.raises(ValueError, match="`trajectory`"):
        animate_reverse(np.zeros((5, 4, 3)), tmp_path / "bad.gif")
    assert not (tmp_path / "bad.gif").exists()


def test_score_must_map_one_point_to_one_point():
    with pytest.raises(ValueError, match="`score`"):
        plot_score(lambda t, x: x[:, 0], 0.5)  # written for a batch
    with pytest.raises(ValueError, match=r"`score\(t, x\)`.*\(3,\)"):
        plot_score(lambda t, x: jnp.zeros(3), 0.5)
    with pytest.raises(ValueError, match="`t`"):
        plot_score(lambda t, x: -x, jnp.ones(2))


def test_bad_options():
    with pytest.raises(ValueError, match="`area`"):
        plot_heatmap(_points(), area=(2, -2))
    with pytest.raises(ValueError, match="`bandwidth`"):
        plot_heatmap(_points(), bandwidth=0.0)
    with pytest.raises(ValueError, match="`history`"):
        plot_loss(np.ones((3, 2)))
    with pytest.raises(ValueError, match="`metrics`"):
        plot_comparison({"a": _points()}, metrics={"b": "MMD 1"})
    with pytest.raises(ValueError, match=r"samples_by_name\['b'\]"):
        plot_comparison({"a": _points(), "b": np.zeros((4, 3))})
    with pytest.raises(ValueError, match="`samples_by_name`"):
        plot_comparison({})


def test_non_finite_values_are_dropped_with_a_warning(tmp_path):
    x = _points(100)
    x[3, 0], x[7, 1] = np.nan, np.inf
    with pytest.warns(UserWarning, match="dropped 2 of 100"):
        fig = plot_scatter(x)
    assert fig.axes[0].collections[0].get_offsets().shape == (98, 2)
    with pytest.warns(UserWarning, match="dropped 1 of 4"):
        fig = plot_loss([1.0, np.nan, 0.5, 0.25])
    traj = _trajectory(n=10, k=4)
    traj[2, 1, 0] = np.nan
    with pytest.warns(UserWarning, match="dropped 1 of 10 paths"):
        path = animate_reverse(traj, tmp_path / "nan.gif")
    with Image.open(path) as im:
        assert im.n_frames == 4
    with pytest.raises(ValueError, match="no finite"), pytest.warns(UserWarning):
        plot_heatmap(np.full((5, 2), np.nan))
