"""NCSNv2's techniques for choosing the noise ladder and the Langevin step size."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_num, check_positive
from ._custom_types import FloatArrayLike
from ._objective import MultiNoiseDSM
from ._sampler import AnnealedLangevin
from ._sde import VESDE


def max_pairwise_distance(data: FloatArrayLike, *, chunk: int = 1024) -> float:
    r"""Technique 1: $\sigma_1 = \max_{i,j}\|x_i - x_j\|$, the largest Euclidean distance
    between two training points, so the largest noise level lets Langevin travel between
    any two of them. Computed in row blocks of `chunk`, never an $n\times n\times d$ array.

    **Arguments:**

    - `data`: training data `(n, *data_shape)`, $n \ge 2$.
    - `chunk`: rows per block (default 1024).

    **Returns:**

    $\sigma_1$, a Python float.
    """
    x = jnp.asarray(data, dtype=float)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"`data` must have shape (n, *data_shape) with n >= 2, got {x.shape}.")
    x = x.reshape(x.shape[0], -1)
    pad = -x.shape[0] % chunk
    blocks = jnp.pad(x, ((0, pad), (0, 0)), mode="edge").reshape(-1, chunk, x.shape[1])

    def block_max(rows):
        sq = jnp.sum(rows**2, 1)[:, None] + jnp.sum(x**2, 1)[None] - 2 * rows @ x.T
        return jnp.max(sq)

    return math.sqrt(max(float(jnp.max(jax.lax.map(block_max, blocks))), 0.0))


def _normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _overlap(gamma: float, dim: int) -> float:
    a = math.sqrt(2 * dim) * (gamma - 1)
    return _normal_cdf(a + 3 * gamma) - _normal_cdf(a - 3 * gamma)


def geometric_ratio(dim: int) -> float:
    r"""Technique 2: the ratio $\gamma = \sigma_{i-1}/\sigma_i$ of the geometric noise ladder
    that solves

    $$\Phi\big(\sqrt{2D}(\gamma - 1) + 3\gamma\big) - \Phi\big(\sqrt{2D}(\gamma - 1) -
    3\gamma\big) = \tfrac12$$

    for data of dimension $D$: adjacent Gaussian shells then overlap enough for Langevin
    to pass from one level to the next. Solved by bisection to machine precision. The
    equation has a root only for $D > 4.5$ (the technique is for high dimension).
    Examples: $D = 3072$ (CIFAR-10) gives $\gamma \approx 1.040$, $D = 784$ gives 1.082.

    **Arguments:**

    - `dim`: the data's dimension $D \ge 5$.

    **Returns:**

    $\gamma > 1$, a Python float.
    """
    check_num("dim", dim)
    if math.sqrt(2 * dim) <= 3:
        raise ValueError(
            f"geometric_ratio needs dim >= 5 (the equation has no root for D <= 4.5), got "
            f"dim={dim}; for low-dimensional data call ncsnv2_hyperparameters(data), which "
            "uses its low-dimension rule, or pass ncsnv2_hyperparameters(data, dim=5 or more) "
            "for a ladder from this technique."
        )
    lo, hi = 1.0, 2.0
    while _overlap(hi, dim) > 0.5:
        hi = 1 + 2 * (hi - 1)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _overlap(mid, dim) > 0.5 else (lo, mid)
    return 0.5 * (lo + hi)


def _step_size_objective(eps, sigma_min: float, gamma: float, steps_per_level: int):
    s = eps / sigma_min**2
    r = 2 * eps / (sigma_min**2 - sigma_min**2 * (1 - s) ** 2)
    return (1 - s) ** (2 * steps_per_level) * (gamma**2 - r) + r


def langevin_step_size(sigma_min: float, gamma: float, steps_per_level: int) -> float:
    r"""Technique 3: the step $\epsilon$ of annealed Langevin
    ($\alpha_i = \epsilon\sigma_i^2/\sigma_L^2$) that brings

    $$f(\epsilon) = \Big(1 - \frac{\epsilon}{\sigma_L^2}\Big)^{2T}\Big(\gamma^2 -
    \frac{2\epsilon}{\sigma_L^2 - \sigma_L^2(1 - \epsilon/\sigma_L^2)^2}\Big) +
    \frac{2\epsilon}{\sigma_L^2 - \sigma_L^2(1 - \epsilon/\sigma_L^2)^2}$$

    closest to 1, for $T$ = `steps_per_level`: after $T$ steps at a level the variance of
    the chain matches the level's. $f$ is minimised over a fine log grid of
    $\epsilon \in (0, \sigma_L^2)$. NCSNv2's CIFAR-10 setting ($\sigma_L = 0.01$,
    $\gamma = 5000^{1/231}$, $T = 5$) gives $6.18\times10^{-6}$; the paper used
    $6.2\times10^{-6}$.

    **Arguments:**

    - `sigma_min`: $\sigma_L > 0$, the smallest noise level.
    - `gamma`: the ladder's ratio $\gamma > 1$ (see
      [`geometric_ratio`][scoresde.geometric_ratio]).
    - `steps_per_level`: $T \ge 1$.

    **Returns:**

    $\epsilon \in (0, \sigma_L^2)$, a Python float.
    """
    check_positive("sigma_min", sigma_min)
    check_num("steps_per_level", steps_per_level)
    if not gamma > 1:
        raise ValueError(f"`gamma` must be > 1, got {gamma}.")
    grid = np.geomspace(sigma_min**2 * 1e-9, sigma_min**2 * (1 - 1e-9), 200_001)
    values = _step_size_objective(grid, sigma_min, gamma, steps_per_level)
    return float(grid[np.argmin(np.abs(values - 1))])


@dataclasses.dataclass(frozen=True)
class NCSNv2Hyperparameters:
    """A noise ladder and Langevin step chosen by NCSNv2's techniques; build the matching
    SDE, objective and sampler from it.

    **Fields:** `sigma_max` ($\\sigma_1$), `sigma_min` ($\\sigma_L$), `num_levels` ($L$),
    `gamma` (the ladder's actual ratio $(\\sigma_1/\\sigma_L)^{1/(L-1)}$, at most the
    technique's), `steps_per_level`, `step_size` ($\\epsilon$).

    **Methods** (each builds a fresh object, so call them): `hp.sde()` the `VESDE`,
    `hp.eps()` the time of $\\sigma_L$, `hp.objective()` the `MultiNoiseDSM` and
    `hp.sampler(**overrides)` the `AnnealedLangevin`, all on the same levels. To change a
    field, `dataclasses.replace(hp, step_size=3e-3)`.
    """

    sigma_max: float
    sigma_min: float
    num_levels: int
    gamma: float
    steps_per_level: int
    step_size: float

    def sde(self) -> VESDE:
        """`VESDE(sigma_min=σ_L/100, sigma_max=σ_1)`. The VE SDE's exact std is
        $\\sqrt{\\sigma(t)^2 - \\sigma_{\\min}^2}$; putting its $\\sigma_{\\min}$ two decades
        under $\\sigma_L$ keeps the ladder geometric to a relative $5\\times10^{-5}$."""
        return VESDE(sigma_min=self.sigma_min / 100, sigma_max=self.sigma_max)

    def eps(self) -> float:
        """The time of the smallest level, where the SDE's std is $\\sigma_L$."""
        return float(self.sde().t_from_sigma(self.sigma_min))

    def objective(self) -> MultiNoiseDSM:
        return MultiNoiseDSM(self.sde(), self.num_levels, eps=self.eps())

    def sampler(self, **kwargs) -> AnnealedLangevin:
        """`AnnealedLangevin` on the same levels; `kwargs` (e.g. `denoise=True`, or a
        `step_size` of your own) override or add to the chosen values."""
        options = {
            "num_levels": self.num_levels,
            "steps_per_level": self.steps_per_level,
            "step_size": self.step_size,
            "eps": self.eps(),
        }
        return AnnealedLangevin(**{**options, **kwargs})


LOW_DIM_RATIO = 1.3
"""The ladder's ratio $\\gamma$ of `ncsnv2_hyperparameters` for data of dimension <= 4."""
LOW_DIM_STEPS_PER_LEVEL = 33
LOW_DIM_STEP = 0.3
"""The low-dimension step: $\\epsilon = 0.3\\,\\sigma_L^2$."""


def ncsnv2_hyperparameters(
    data: FloatArrayLike,
    *,
    sigma_min: float = 0.01,
    steps_per_level: int | None = None,
    dim: int | None = None,
) -> NCSNv2Hyperparameters:
    r"""All three NCSNv2 techniques at once (Song & Ermon, 2020): $\sigma_1$ from the data,
    $\gamma$ from the dimension, $L = \lceil\log(\sigma_1/\sigma_L)/\log\gamma\rceil + 1$
    levels, and $\epsilon$ for `steps_per_level`.

    **Low dimension.** Techniques 2 and 3 assume high dimension, where the perturbed data
    lie on thin shells: technique 2's equation has no root for $D \le 4$, and technique 3's
    $\epsilon$ is then far too small (on the 2-D 0.95/0.05 mixture of Song & Ermon's toy
    example it leaves the chains unmixed: weights 0.908/0.092 and the big mode's std 1.14
    instead of 1). For data of dimension $D \le 4$ (unless `dim=` says otherwise) this
    function uses a measured rule instead: $\gamma = 1.3$, $T = 33$ steps per level and
    $\epsilon = 0.3\,\sigma_L^2$. With the exact score of that mixture it gives weights
    0.937/0.063 and the big mode's std 1.03 at $\sigma_L = 0.01$ (0.937/0.063 and 1.04 at
    $\sigma_L = 0.1$), from uniform noise on $[-8, 8]^2$, 5000 samples.

    **Arguments:**

    - `data`: training data `(n, *data_shape)`.
    - `sigma_min`: $\sigma_L$, small enough that $q_{\sigma_L} \approx p_{\text{data}}$.
    - `steps_per_level`: $T$, Langevin steps per level (default 5; 33 in low dimension).
    - `dim`: the dimension for technique 2 (default: the data's). For low-dimensional
      data, `dim >= 5` uses techniques 2 and 3 instead of the low-dimension rule.

    **Returns:**

    An [`NCSNv2Hyperparameters`][scoresde.NCSNv2Hyperparameters]; its `sde()`,
    `objective()` and `sampler()` build the matching `VESDE`, `MultiNoiseDSM` and
    `AnnealedLangevin`.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{song2020improved,
          title={Improved Techniques for Training Score-Based Generative Models},
          author={Song, Yang and Ermon, Stefano}, booktitle={NeurIPS}, year={2020}
        }
        ```
    """
    check_positive("sigma_min", sigma_min)
    sigma_max = max_pairwise_distance(data)
    if not sigma_max > sigma_min:
        raise ValueError(
            f"`sigma_min` ({sigma_min}) must be below the data's largest pairwise distance "
            f"({sigma_max})."
        )
    dim = int(np.prod(np.shape(data)[1:])) if dim is None else dim
    check_num("dim", dim)
    low = math.sqrt(2 * dim) <= 3  # technique 2 has no root
    if steps_per_level is None:
        steps_per_level = LOW_DIM_STEPS_PER_LEVEL if low else 5
    check_num("steps_per_level", steps_per_level)
    gamma = LOW_DIM_RATIO if low else geometric_ratio(dim)
    num_levels = math.ceil(math.log(sigma_max / sigma_min) / math.log(gamma)) + 1
    ratio = (sigma_max / sigma_min) ** (1 / (num_levels - 1))
    if low:
        step_size = LOW_DIM_STEP * sigma_min**2
    else:
        step_size = langevin_step_size(sigma_min, ratio, steps_per_level)
    return NCSNv2Hyperparameters(
        sigma_max=sigma_max,
        sigma_min=sigma_min,
        num_levels=num_levels,
        gamma=ratio,
        steps_per_level=steps_per_level,
        step_size=step_size,
    )
