import jax.numpy as jnp
import jax.random as jr

from .._custom_types import Data, PRNGKeyArray, Scalar
from .._sde import AbstractLinearSDE
from ._base import (
    AbstractObjective,
    check_eps,
    Model,
    perturb,
    require_linear,
    TimeDistribution,
    TimeSampling,
    Weighting,
)


class DenoisingScoreMatching(AbstractObjective):
    r"""Denoising score matching over continuous time (Vincent, 2011; Song et al., 2021):

    $$\mathcal L(\theta) = \mathbb E_{t \sim U[\epsilon, T]}\,\mathbb E_{x_0, z}\Big[
    \tfrac12\lambda(t)\,\big\|s_\theta(t, x_t) + z/s(t)\big\|^2\Big],\qquad
    x_t = m(t)x_0 + s(t)z,$$

    whose minimiser is the score of the perturbed data, $\nabla\log p_t$, since
    $-z/s(t) = \nabla_{x_t}\log p(x_t \mid x_0)$. It is computed as
    $\tfrac12 \tfrac{\lambda(t)}{s(t)^2}\|s(t)s_\theta + z\|^2$, which stays well scaled as
    $s(t) \to 0$. Squared norms are summed over the data dimensions.

    **Arguments:**

    - `sde`: a linear SDE (its closed-form kernel perturbs the data).
    - `weighting`: $\lambda(t)$: `"std2"` ($s(t)^2$, the SGM-from-scratch tutorial and
      Song et al.; the loss is then the noise-prediction loss), `"likelihood"` ($g(t)^2$:
      the loss bounds the negative log-likelihood, Song et al. 2021b) or `"constant"`.
    - `time_sampling`: `"uniform"`, or `"importance"` to draw $t \propto \lambda/s^2$
      (worth it with the likelihood weighting, whose integrand grows like $1/t$).
    - `eps`: the smallest training time (default: the SDE's `default_eps`).

    ??? cite "Reference"

        ```bibtex
        @article{vincent2011connection,
          title={A Connection Between Score Matching and Denoising Autoencoders},
          author={Vincent, Pascal}, journal={Neural Computation}, year={2011}
        }
        @inproceedings{song2021maximum,
          title={Maximum Likelihood Training of Score-Based Diffusion Models},
          author={Song, Yang and Durkan, Conor and Murray, Iain and Ermon, Stefano},
          booktitle={NeurIPS}, year={2021}
        }
        ```
    """

    sde: AbstractLinearSDE
    times: TimeDistribution

    def __init__(
        self,
        sde: AbstractLinearSDE,
        *,
        weighting: Weighting = "std2",
        time_sampling: TimeSampling = "uniform",
        eps: float | None = None,
    ):
        require_linear(self, sde)
        self.sde = sde
        self.times = TimeDistribution(sde, weighting, time_sampling, check_eps(sde, eps))

    @property
    def weighting(self) -> Weighting:
        return self.times.weighting

    def loss_one(self, model: Model, x: Data, key: PRNGKeyArray) -> Scalar:
        key_t, key_z = jr.split(key)
        t, factor = self.times(key_t)
        x_t, z, std = perturb(self.sde, t, x, key_z)
        return 0.5 * factor * jnp.sum((std * model(t, x_t) + z) ** 2)
