r"""Toy data sets for score-based generative modelling, and the small real one (8×8 digits).

Every sampler here is a pure JAX function `f(num, *, key, ...)` that returns `num` independent
draws, shape `(num, d)`, in JAX's default float dtype (float32 unless `jax_enable_x64` is on).
The same key gives the same array; `num` must be a Python `int` (it is a shape), so under
`jax.jit` pass it as a static argument. Hyperparameters that are not shapes may be traced; they
are validated only when they are concrete.

Scales, so that data sets can be swapped without retuning an SDE:

| data set | support (noise-free) |
|---|---|
| [`circle`][scoresde.datasets.circle] | `num_points` points on the circle of radius `radius` |
| [`sphere`][scoresde.datasets.sphere] | the sphere of radius `radius` in $\mathbb R^d$ |
| [`swiss_roll`][scoresde.datasets.swiss_roll] | $[-1.9, 2.6]\times[-2.3, 2.9]$ (`scale=0.2`) |
| [`two_moons`][scoresde.datasets.two_moons] | $[-3, 3]\times[-1.2, 1.8]$ |
| [`checkerboard`][scoresde.datasets.checkerboard] | $[-4, 4]^2$ |
| [`eight_gaussians`][scoresde.datasets.eight_gaussians] | centres at radius $2\sqrt2$ |
| [`pinwheel`][scoresde.datasets.pinwheel] | mostly the disc of radius 4 |
| [`ncsn_mixture`][scoresde.datasets.ncsn_mixture] | modes at $\pm(5, 5)$, unit variance |
"""

import functools as ft
import math
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Shaped

from ._checks import check_weights
from ._custom_types import Array, Float, Int, PRNGKeyArray, ScalarLike
from ._typecheck import typechecked


__all__ = [
    "checkerboard",
    "circle",
    "eight_gaussians",
    "gaussian_mixture",
    "load_digits",
    "ncsn_mixture",
    "ncsn_mixture_params",
    "pinwheel",
    "sphere",
    "swiss_roll",
    "train_test_split",
    "two_moons",
]

_VectorLike = Float[Array, " k"] | Float[np.ndarray, " k"]
_MatrixLike = Float[Array, "k d"] | Float[np.ndarray, "k d"]
_AnyArray = Shaped[Array, "n ..."] | Shaped[np.ndarray, "n ..."]


def _float(x) -> Array:
    return jnp.asarray(x, dtype=float)


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_num(num: int, name: str = "num") -> None:
    if isinstance(num, bool) or num < 1:
        raise ValueError(f"`{name}` must be an int >= 1, got {num!r}.")


def _check_positive(name: str, value, *, allow_zero: bool = False) -> None:
    if not _concrete(value):
        return
    v = np.asarray(value)
    bad = ~np.isfinite(v) | ((v < 0) if allow_zero else (v <= 0))
    if np.any(bad):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be finite and {bound}, got {value!r}.")


@typechecked
def circle(
    num: int, *, key: PRNGKeyArray, num_points: int = 8, radius: ScalarLike = 1.0
) -> Float[Array, "num 2"]:
    r"""Draws uniformly from `num_points` equally spaced points on a circle.

    This is the data set of the tutorial "Score-based generative models from scratch in
    JAX" (the SGM-from-scratch tutorial).

    The points are $r(\cos\alpha_k, \sin\alpha_k)$ with $\alpha_k = 2\pi k/K$,
    $k = 0, \dots, K - 1$: a finite "manifold" on which the exact score of the empirical
    measure memorises, and a model should generalise.

    **Arguments:**

    - `num`: number of draws.
    - `key`: a JAX PRNG key.
    - `num_points`: $K$, the number of points on the circle.
    - `radius`: $r$.

    **Returns:**

    An array of shape `(num, 2)`.
    """
    _check_num(num)
    _check_num(num_points, "num_points")
    _check_positive("radius", radius)
    return _circle(num, key, num_points, radius)


@ft.partial(jax.jit, static_argnums=(0, 2))
def _circle(num, key, num_points, radius):
    k = jr.randint(key, (num,), 0, num_points)
    angle = 2 * jnp.pi * k / num_points
    return _float(radius) * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)


@typechecked
def sphere(
    num: int, *, key: PRNGKeyArray, dim: int = 3, radius: ScalarLike = 1.0
) -> Float[Array, "num dim"]:
    r"""Draws uniformly from the sphere $\{x \in \mathbb R^d : \|x\| = r\}$.

    Computed as $r\,z/\|z\|$ with $z \sim \mathcal N(0, I_d)$, which is uniform by rotation
    invariance. (`dim=1` gives $\pm r$ with probability ½ each.)

    **Arguments:**

    - `num`: number of draws.
    - `key`: a JAX PRNG key.
    - `dim`: the ambient dimension $d$.
    - `radius`: $r$.

    **Returns:**

    An array of shape `(num, dim)`.
    """
    _check_num(num)
    _check_num(dim, "dim")
    _check_positive("radius", radius)
    return _sphere(num, key, dim, radius)


@ft.partial(jax.jit, static_argnums=(0, 2))
def _sphere(num, key, dim, radius):
    z = jr.normal(key, (num, dim))
    return _float(radius) * z / jnp.linalg.norm(z, axis=-1, keepdims=True)


@typechecked
def swiss_roll(
    num: int, *, key: PRNGKeyArray, noise: ScalarLike = 0.0, scale: ScalarLike = 0.2
) -> Float[Array, "num 2"]:
    r"""The 2-D swiss roll: scikit-learn's `make_swiss_roll`, coordinates x and z.

    With $u \sim U[0, 1)$ and $t = \tfrac{3\pi}{2}(1 + 2u) \in [\tfrac{3\pi}{2},
    \tfrac{9\pi}{2})$,

    $$x = c\,\big(t\cos t + \sigma\varepsilon_1,\; t\sin t + \sigma\varepsilon_2\big),
    \qquad \varepsilon \sim \mathcal N(0, I_2),$$

    where $\sigma$ is `noise` (in the roll's own units, as in scikit-learn) and $c$ is `scale`.
    The default $c = 0.2$ (divide by 5, as FFJORD does) puts the noise-free roll in
    $[-1.9, 2.6]\times[-2.3, 2.9] \subset [-3, 3]^2$. The data set of M. F. Kasim's
    tutorial "Score-based generative model tutorial, part 1: without SDE" (2022) is
    `swiss_roll(n, key=key, noise=1.0, scale=0.1)`.

    **Arguments:**

    - `num`: number of draws.
    - `key`: a JAX PRNG key.
    - `noise`: standard deviation $\sigma \ge 0$ of the Gaussian noise, before scaling.
    - `scale`: the factor $c > 0$ applied last.

    **Returns:**

    An array of shape `(num, 2)`.
    """
    _check_num(num)
    _check_positive("noise", noise, allow_zero=True)
    _check_positive("scale", scale)
    return _swiss_roll(num, key, noise, scale)


@ft.partial(jax.jit, static_argnums=0)
def _swiss_roll(num, key, noise, scale):
    key_t, key_noise = jr.split(key)
    t = 1.5 * jnp.pi * (1 + 2 * jr.uniform(key_t, (num,)))
    x = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1)
    x = x + _float(noise) * jr.normal(key_noise, (num, 2))
    return _float(scale) * x


@typechecked
def gaussian_mixture(
    num: int,
    *,
    key: PRNGKeyArray,
    weights: _VectorLike,
    means: _MatrixLike,
    stds: ScalarLike | _VectorLike,
) -> Float[Array, "num d"]:
    r"""Draws from an isotropic Gaussian mixture $\sum_k w_k\,\mathcal N(\mu_k, \sigma_k^2 I)$.

    For full covariances, and for the exact score of the mixture, see
    [`GaussianMixtureScore`][scoresde.GaussianMixtureScore].

    **Arguments:**

    - `num`: number of draws.
    - `key`: a JAX PRNG key.
    - `weights`: $w$, shape `(k,)`, non-negative, summing to 1.
    - `means`: $\mu$, shape `(k, d)`.
    - `stds`: $\sigma$, a positive scalar (shared) or shape `(k,)`.

    **Returns:**

    An array of shape `(num, d)`.
    """
    _check_num(num)
    if _concrete(weights):
        check_weights(np.asarray(weights))
    if _concrete(means) and not np.all(np.isfinite(np.asarray(means))):
        raise ValueError("`means` contains NaN or inf.")
    k = means.shape[0]
    stds = _float(stds)
    if stds.ndim == 1 and stds.shape[0] != k:
        raise ValueError(f"`stds` must be a scalar or have shape ({k},), got {stds.shape}.")
    _check_positive("stds", stds)
    return _gaussian_mixture(num, key, _float(weights), _float(means), stds)


@ft.partial(jax.jit, static_argnums=0)
def _gaussian_mixture(num, key, weights, means, stds):
    k, d = means.shape
    stds = jnp.broadcast_to(stds, (k,))
    key_c, key_z = jr.split(key)
    component = jr.categorical(key_c, jnp.log(weights), shape=(num,))
    z = jr.normal(key_z, (num, d))
    return means[component] + stds[component, None] * z


def ncsn_mixture_params() -> tuple[Float[Array, " 2"], Float[Array, "2 2"], Float[Array, "2 2 2"]]:
    r"""The parameters of the two-mode mixture of the NCSN toy-example tutorial (see
    [`ncsn_mixture`][scoresde.datasets.ncsn_mixture]).

    **Returns:**

    `(weights, means, covariances)` with `weights = (0.95, 0.05)`,
    `means = ((-5, -5), (5, 5))` and `covariances = (I_2, I_2)`, shapes `(2,)`, `(2, 2)`,
    `(2, 2, 2)` (the tutorial gives each component the covariance `diag(1, 1)`): pass them as
    keywords to [`GaussianMixtureScore`][scoresde.GaussianMixtureScore] for the exact score.
    """
    weights = jnp.array([0.95, 0.05])
    means = jnp.array([[-5.0, -5.0], [5.0, 5.0]])
    covariances = jnp.stack([jnp.eye(2), jnp.eye(2)])
    return weights, means, covariances


@typechecked
def ncsn_mixture(num: int, *, key: PRNGKeyArray) -> Float[Array, "num 2"]:
    r"""The mixture $0.95\,\mathcal N((-5,-5), I) + 0.05\,\mathcal N((5,5), I)$.

    It is the toy example of a tutorial on NCSN (Song & Ermon, 2019) applied to a Gaussian
    mixture (the NCSN toy-example tutorial), in the spirit of the paper's own two-mode
    example of slow Langevin mixing.

    The two modes are separated by a region of negligible density, so plain Langevin
    dynamics with the exact score gets the mode weights wrong (near 0.5/0.5 from a uniform
    start) while annealed Langevin recovers 0.95/0.05. Its parameters are
    [`ncsn_mixture_params`][scoresde.datasets.ncsn_mixture_params]`()`.

    **Arguments:**

    - `num`: number of draws.
    - `key`: a JAX PRNG key.

    **Returns:**

    An array of shape `(num, 2)`.

    ??? cite

        Song, Y. and Ermon, S. (2019), *Generative Modeling by Estimating Gradients of the Data
        Distribution*, NeurIPS, section 3.2.2.
    """
    _check_num(num)
    weights, means, _ = ncsn_mixture_params()
    return gaussian_mixture(num, key=key, weights=weights, means=means, stds=1.0)


@typechecked
def two_moons(num: int, *, key: PRNGKeyArray, noise: ScalarLike = 0.05) -> Float[Array, "num 2"]:
    r"""Two interleaving half circles (scikit-learn's `make_moons`, FFJORD's scaling).

    Each draw picks a moon with probability ½ and an angle $\theta \sim U[0, \pi]$: the upper
    moon is $(\cos\theta, \sin\theta)$, the lower one $(1 - \cos\theta, \tfrac12 - \sin\theta)$.
    Gaussian noise of standard deviation `noise` is added in these unit-radius coordinates
    (as scikit-learn's `noise`), then the point is mapped by $q \mapsto 2q + (-1, -0.2)$, so
    the noise-free moons lie in $[-3, 3]\times[-1.2, 1.8]$ and the output noise has standard
    deviation $2\sigma$.

    **Arguments:**

    - `num`: number of draws.
    - `key`: a JAX PRNG key.
    - `noise`: noise standard deviation $\sigma \ge 0$, before the ×2.

    **Returns:**

    An array of shape `(num, 2)`.
    """
    _check_num(num)
    _check_positive("noise", noise, allow_zero=True)
    return _two_moons(num, key, noise)


@ft.partial(jax.jit, static_argnums=0)
def _two_moons(num, key, noise):
    key_moon, key_angle, key_noise = jr.split(key, 3)
    lower = jr.bernoulli(key_moon, 0.5, (num,))
    theta = jnp.pi * jr.uniform(key_angle, (num,))
    c, s = jnp.cos(theta), jnp.sin(theta)
    q = jnp.where(lower[:, None], jnp.stack([1 - c, 0.5 - s], -1), jnp.stack([c, s], -1))
    q = q + _float(noise) * jr.normal(key_noise, (num, 2))
    return 2 * q + jnp.array([-1.0, -0.2])


@typechecked
def checkerboard(num: int, *, key: PRNGKeyArray) -> Float[Array, "num 2"]:
    r"""Uniform on the 8 "black" squares of a 4×4 checkerboard covering $[-4, 4]^2$ (FFJORD).

    The board is made of squares of side 2; a point $x$ is in the support iff
    $\lfloor x_1/2\rfloor + \lfloor x_2/2\rfloor$ is even.

    **Arguments:**

    - `num`: number of draws.
    - `key`: a JAX PRNG key.

    **Returns:**

    An array of shape `(num, 2)`.
    """
    _check_num(num)
    return _checkerboard(num, key)


@ft.partial(jax.jit, static_argnums=0)
def _checkerboard(num, key):
    key1, key2, key_row = jr.split(key, 3)
    x1 = jr.uniform(key1, (num,), minval=-2.0, maxval=2.0)
    x2 = jr.uniform(key2, (num,)) - 2.0 * jr.bernoulli(key_row, 0.5, (num,))
    x2 = x2 + jnp.mod(jnp.floor(x1), 2)
    return 2 * jnp.stack([x1, x2], axis=-1)


@typechecked
def eight_gaussians(
    num: int,
    *,
    key: PRNGKeyArray,
    radius: ScalarLike = 2 * math.sqrt(2),
    std: ScalarLike = math.sqrt(2) / 4,
) -> Float[Array, "num 2"]:
    r"""An equal-weight mixture of 8 isotropic Gaussians on a circle (FFJORD).

    The centres are $r(\cos\tfrac{k\pi}{4}, \sin\tfrac{k\pi}{4})$, $k = 0, \dots, 7$. The
    defaults $r = 2\sqrt2 \approx 2.83$ and $\sigma = \sqrt2/4 \approx 0.354$ are FFJORD's
    (centres at radius 4, standard deviation 0.5, everything divided by $\sqrt2$).

    **Arguments:**

    - `num`: number of draws.
    - `key`: a JAX PRNG key.
    - `radius`: $r > 0$.
    - `std`: each component's standard deviation $\sigma > 0$.

    **Returns:**

    An array of shape `(num, 2)`.
    """
    _check_num(num)
    _check_positive("radius", radius)
    _check_positive("std", std)
    return _eight_gaussians(num, key, radius, std)


@ft.partial(jax.jit, static_argnums=0)
def _eight_gaussians(num, key, radius, std):
    key_c, key_z = jr.split(key)
    angle = jnp.pi / 4 * jr.randint(key_c, (num,), 0, 8)
    centre = _float(radius) * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
    return centre + _float(std) * jr.normal(key_z, (num, 2))


@typechecked
def pinwheel(
    num: int,
    *,
    key: PRNGKeyArray,
    num_arms: int = 5,
    radial_std: ScalarLike = 0.3,
    tangential_std: ScalarLike = 0.1,
    rate: ScalarLike = 0.25,
) -> Float[Array, "num 2"]:
    r"""A pinwheel with `num_arms` curved arms (Johnson et al. 2016; FFJORD's version).

    Each draw picks an arm $k$ uniformly, draws $f = (1 + \sigma_r\varepsilon_1,
    \sigma_t\varepsilon_2)$ with $\varepsilon \sim \mathcal N(0, I_2)$, and returns

    $$x = 2\,R(-\alpha)\,f, \qquad \alpha = \frac{2\pi k}{K} + a\,e^{f_1},$$

    where $R(\phi)$ is the rotation by $\phi$: the arm bends more the further out a point
    lies. With the defaults nearly all the mass is in the disc of radius 4 (noise-free, the
    points are at radius 2). Arms are drawn independently per sample (FFJORD gives each arm
    exactly `num / K` points).

    **Arguments:**

    - `num`: number of draws.
    - `key`: a JAX PRNG key.
    - `num_arms`: $K$.
    - `radial_std`: $\sigma_r \ge 0$.
    - `tangential_std`: $\sigma_t \ge 0$.
    - `rate`: $a$, how much the arms curl.

    **Returns:**

    An array of shape `(num, 2)`.

    ??? cite

        Johnson, M. J. et al. (2016), *Composing graphical models with neural networks for
        structured representations and fast inference*, NeurIPS.
    """
    _check_num(num)
    _check_num(num_arms, "num_arms")
    _check_positive("radial_std", radial_std, allow_zero=True)
    _check_positive("tangential_std", tangential_std, allow_zero=True)
    return _pinwheel(num, key, num_arms, radial_std, tangential_std, rate)


@ft.partial(jax.jit, static_argnums=(0, 2))
def _pinwheel(num, key, num_arms, radial_std, tangential_std, rate):
    key_arm, key_f = jr.split(key)
    arm = jr.randint(key_arm, (num,), 0, num_arms)
    stds = jnp.stack([_float(radial_std), _float(tangential_std)])
    f = jr.normal(key_f, (num, 2)) * stds + jnp.array([1.0, 0.0])
    alpha = 2 * jnp.pi * arm / num_arms + _float(rate) * jnp.exp(f[:, 0])
    c, s = jnp.cos(alpha), jnp.sin(alpha)
    return 2 * jnp.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], axis=-1)


DIGITS_TEST_SIZE = 300
"""Images in `load_digits(split="test")`; the other 1497 are `split="train"`."""


@typechecked
def load_digits(
    *, key: PRNGKeyArray | None = None, split: str | None = None
) -> tuple[Float[Array, "n 1 8 8"], Int[Array, " n"]]:
    r"""scikit-learn's 8×8 handwritten digits: 1797 grey-scale images of the digits 0–9.

    Needs scikit-learn (`pip install "scoresde[digits]"`); the data ship with it, nothing is
    downloaded. The pixel values $0, \dots, 16$ are divided by 16.

    **Arguments:**

    - `key`: if given, the images (and their labels, alike) are shuffled with it;
      otherwise they are in scikit-learn's order.
    - `split`: `None` (default) for all 1797; `"train"` or `"test"` for a fixed split
      (a seeded permutation, the same on every machine) into 1497 training and 300
      held-out images, the split the digits' Fréchet distance
      ([`metrics.digits_frechet_distance`][scoresde.metrics.digits_frechet_distance])
      and the CLI's `--dataset digits` use.

    **Returns:**

    `(images, labels)`: `images` of shape `(1797, 1, 8, 8)` (channel first) with values in
    $[0, 1]$, and `labels` of shape `(1797,)`, integers in $0, \dots, 9$.
    """
    try:
        import sklearn.datasets
    except ImportError:
        raise ImportError(
            'load_digits needs scikit-learn: pip install "scoresde[digits]"'
        ) from None
    digits = sklearn.datasets.load_digits()
    images = np.asarray(digits.images)[:, None] / 16.0
    labels = np.asarray(digits.target)
    if split is not None:
        if split not in ("train", "test"):
            raise ValueError(f"`split` must be None, 'train' or 'test', got {split!r}.")
        order = np.random.RandomState(0).permutation(len(images))
        rows = order[:-DIGITS_TEST_SIZE] if split == "train" else order[-DIGITS_TEST_SIZE:]
        images, labels = images[rows], labels[rows]
    images = _float(images)
    labels = jnp.asarray(labels, dtype=jnp.int32)
    if key is not None:
        perm = jr.permutation(key, images.shape[0])
        images, labels = images[perm], labels[perm]
    return images, labels


@typechecked
def train_test_split(
    data: _AnyArray | tuple[_AnyArray, ...],
    *,
    key: PRNGKeyArray,
    test_fraction: float = 0.2,
) -> tuple[Any, Any]:
    r"""Splits data into a training and a held-out part along the first axis, at random.

    `round(test_fraction * n)` rows, chosen by a random permutation from `key`, go to the
    test part; the rest, in permuted order, to the training part.

    **Arguments:**

    - `data`: an array of shape `(n, ...)`, or a tuple of such arrays with the same `n`
      (for example `(images, labels)`), split alike.
    - `key`: a JAX PRNG key.
    - `test_fraction`: in $(0, 1)$; both parts must end up non-empty.

    **Returns:**

    `(train, test)`, each an array or a tuple of arrays like `data`.
    """
    arrays = data if isinstance(data, tuple) else (data,)
    if len(arrays) == 0:
        raise ValueError("`data` is an empty tuple; pass an array or a tuple of arrays.")
    n = arrays[0].shape[0]
    for i, a in enumerate(arrays):
        if a.ndim < 1 or a.shape[0] != n:
            raise ValueError(
                f"every array in `data` must have the same first axis: `data[0]` has {n} "
                f"rows but `data[{i}]` has shape {a.shape}."
            )
    if not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction}.")
    num_test = int(round(test_fraction * n))
    if not 1 <= num_test <= n - 1:
        raise ValueError(
            f"`test_fraction={test_fraction}` of {n} rows leaves {num_test} test and "
            f"{n - num_test} training rows; both must be >= 1."
        )
    perm = jr.permutation(key, n)
    test_idx, train_idx = perm[:num_test], perm[num_test:]
    train = tuple(jnp.asarray(a)[train_idx] for a in arrays)
    test = tuple(jnp.asarray(a)[test_idx] for a in arrays)
    if isinstance(data, tuple):
        return train, test
    return train[0], test[0]
