"""The digits' Fréchet distance: near its floor for real held-out digits, far above it for
blurred or shuffled ones; the image grid."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

import scoresde as sd
from scoresde import _digits_metric, metrics, plotting


pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def test_digits():
    return np.asarray(sd.datasets.load_digits(split="test")[0])


def _blur(x):
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    return sum(padded[:, :, i : i + 8, j : j + 8] for i in range(3) for j in range(3)) / 9


def test_real_digits_score_near_the_floor_and_damaged_ones_far_above(test_digits):
    x = test_digits
    floor = metrics.digits_frechet_distance(x)
    assert floor < 2.0
    blurred = metrics.digits_frechet_distance(_blur(x))
    shuffled = x.reshape(len(x), -1)[:, np.random.default_rng(0).permutation(64)]
    shuffled = metrics.digits_frechet_distance(shuffled.reshape(x.shape))
    assert blurred > 20 * floor and shuffled > 40 * floor
    # The classifier knows the held-out digits.
    labels, confidence = metrics.digits_predictions(x)
    truth = np.asarray(sd.datasets.load_digits(split="test")[1])
    assert np.mean(labels == truth) > 0.95 and confidence.shape == (len(x),)
    # Cached on disk: a second load reads the same weights.
    assert _digits_metric._cache_file().is_file()


def test_frechet_distance_of_gaussians_is_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    b = rng.normal(size=(20000, 3)) * 2.0 + 1.0
    # |mu|^2 = 3; tr(I + 4I - 2 * 2I) = 3.
    assert metrics.frechet_distance(a, b) == pytest.approx(6.0, rel=0.03)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_bad_input_names_the_argument(test_digits):
    with pytest.raises(ValueError, match=r"\(n, 1, 8, 8\)"):
        metrics.digits_frechet_distance(np.zeros((5, 64)))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.digits_frechet_distance(test_digits[:1])


def test_image_grid(tmp_path, test_digits):
    fig = plotting.plot_image_grid(test_digits[:10], titles=list("0123456789"))
    assert sum(len(ax.images) for ax in fig.axes) == 10 and len(fig.axes) == 12
    plotting.save(fig, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0
    plt.close(fig)
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        plotting.plot_image_grid(np.zeros((4, 8, 8)))
