import jax.numpy as jnp
import jax.random as jr

from .._checks import check_level_eps, is_integer, static_number
from .._custom_types import Data, PRNGKeyArray, Scalar
from .._sde import AbstractLinearSDE
from ._base import AbstractObjective, Model, perturb, require_linear


class MultiNoiseDSM(AbstractObjective):
    r"""NCSN's multi-noise denoising score matching over a discrete ladder of noise levels
    (Song & Ermon, 2019; the NCSN toy-example tutorial):

    $$\mathcal L(\theta) = \frac1L\sum_{i=1}^L \lambda(\sigma_i)\,
    \tfrac12\,\mathbb E\big\|s_\theta(t_i, x + \sigma_i z) + z/\sigma_i\big\|^2,
    \qquad \lambda(\sigma) = \sigma^2,$$

    so every level contributes $\tfrac12\mathbb E\|\sigma_i s_\theta + z\|^2$, of order one.
    Each data point draws one level uniformly. The levels are the times
    $t_1 = T > \dots > t_L = \epsilon$ of a uniform grid with $\sigma_i = s(t_i)$: exactly
    the levels of [`AnnealedLangevin`][scoresde.AnnealedLangevin]`(num_levels=L, eps=eps)`,
    so sampling visits the noise levels the network was trained on. For the VE SDE the
    ladder is geometric, as in NCSN.

    **Arguments:**

    - `sde`: a linear SDE (usually [`VESDE`][scoresde.VESDE]).
    - `num_levels`: $L \ge 2$.
    - `eps`: the time of the smallest level (default: the SDE's `level_eps`, as for
      `AnnealedLangevin`: for the VE SDE the time at which $s(t) = \sigma_{\min}$, so the
      ladder ends at the `sigma_min` you declared); for another smallest noise
      $\sigma_L$ use `sde.t_from_sigma(sigma_L)`.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{song2019generative,
          title={Generative Modeling by Estimating Gradients of the Data Distribution},
          author={Song, Yang and Ermon, Stefano}, booktitle={NeurIPS}, year={2019}
        }
        ```
    """

    sde: AbstractLinearSDE
    num_levels: int = static_number()
    eps: float = static_number()

    def __init__(self, sde: AbstractLinearSDE, num_levels: int, *, eps: float | None = None):
        require_linear(self, sde)
        if not is_integer(num_levels) or num_levels < 2:
            raise ValueError(f"`num_levels` must be an integer >= 2, got {num_levels!r}.")
        eps = check_level_eps(sde, eps, "it is the time of the smallest noise level")
        self.sde, self.num_levels, self.eps = sde, num_levels, eps

    def level_times(self):
        """The times $t_1 = T > \\dots > t_L = \\epsilon$ of the levels."""
        return jnp.linspace(self.sde.T, self.eps, self.num_levels)

    def loss_one(self, model: Model, x: Data, key: PRNGKeyArray) -> Scalar:
        key_level, key_z = jr.split(key)
        t = self.level_times()[jr.randint(key_level, (), 0, self.num_levels)]
        x_t, z, std = perturb(self.sde, t, x, key_z)
        return 0.5 * jnp.sum((std * model(t, x_t) + z) ** 2)
