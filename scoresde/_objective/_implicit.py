import jax
import jax.numpy as jnp

from .._custom_types import Data, PRNGKeyArray, Scalar
from .._sde import AbstractLinearSDE
from ._base import AbstractObjective, MaybeNoisy, Model


class ImplicitScoreMatching(AbstractObjective):
    r"""Implicit score matching (Hyvärinen, 2005; Kasim's tutorial):

    $$\mathcal L(\theta) = \mathbb E_{x \sim p}\Big[\tfrac12\|s_\theta(x)\|^2 +
    \operatorname{tr}\nabla_x s_\theta(x)\Big],$$

    equal to $\tfrac12\mathbb E\|s_\theta - \nabla\log p\|^2$ up to a constant, by parts.
    The trace is exact (the full Jacobian, `jax.jacfwd`): $d$ forward passes per point,
    right in low dimension; use [`SlicedScoreMatching`][scoresde.SlicedScoreMatching] for
    images. Use a smooth network (softplus, log-sigmoid): with ReLU the trace is piecewise
    constant in $x$.

    **Arguments:**

    - `sde`: `None` (default) to match the data score at $t = 0$, as Kasim's tutorial does; or a
      linear SDE to match $\nabla\log p_t$ at $t \sim U[\epsilon, T]$, weighted by
      $s(t)^2$.
    - `eps`: the smallest training time when `sde` is given.

    ??? cite "Reference"

        ```bibtex
        @article{hyvarinen2005estimation,
          title={Estimation of Non-Normalized Statistical Models by Score Matching},
          author={Hyv{\"a}rinen, Aapo}, journal={JMLR}, year={2005}
        }
        ```
    """

    inputs: MaybeNoisy

    def __init__(self, sde: AbstractLinearSDE | None = None, *, eps: float | None = None):
        self.inputs = MaybeNoisy(self, sde, eps)

    def loss_one(self, model: Model, x: Data, key: PRNGKeyArray) -> Scalar:
        t, x_in, w = self.inputs(x, key)
        flat = lambda v: model(t, v.reshape(x.shape)).reshape(-1)
        s = flat(x_in.reshape(-1))
        jac = jax.jacfwd(flat)(x_in.reshape(-1))
        return w * (0.5 * jnp.sum(s**2) + jnp.trace(jac))
