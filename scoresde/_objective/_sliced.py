from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._checks import check_num, static_number
from .._custom_types import Data, PRNGKeyArray, Scalar
from .._numerics import normal
from .._sde import AbstractLinearSDE
from ._base import AbstractObjective, MaybeNoisy, Model


class SlicedScoreMatching(AbstractObjective):
    r"""Sliced score matching (Song et al., 2019): implicit score matching with the
    Jacobian trace replaced by random projections $v$ with $\mathbb E[vv^\top] = I$,

    $$\mathcal L(\theta) = \mathbb E_{x, v}\Big[v^\top \nabla_x s_\theta(x)\, v +
    \tfrac12 (v^\top s_\theta(x))^2\Big],$$

    or, `variance_reduced=True` (SSM-VR), with $\tfrac12(v^\top s)^2$ replaced by its
    expectation $\tfrac12\|s\|^2$. $v^\top \nabla s\, v$ is one Jacobian-vector product, so
    the cost does not grow with the dimension.

    **Arguments:**

    - `sde`: `None` (data score at $t = 0$) or a linear SDE (as in
      [`ImplicitScoreMatching`][scoresde.ImplicitScoreMatching]).
    - `num_projections`: projections per data point (default 1).
    - `projection`: `"rademacher"` (default; lowest variance) or `"gaussian"`.
    - `variance_reduced`: use SSM-VR (default `True`).
    - `eps`: the smallest training time when `sde` is given.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{song2019sliced,
          title={Sliced Score Matching: A Scalable Approach to Density and Score Estimation},
          author={Song, Yang and Garg, Sahaj and Shi, Jiaxin and Ermon, Stefano},
          booktitle={UAI}, year={2019}
        }
        ```
    """

    inputs: MaybeNoisy
    num_projections: int = static_number()
    projection: Literal["rademacher", "gaussian"] = eqx.field(static=True)
    variance_reduced: bool = eqx.field(static=True)

    def __init__(
        self,
        sde: AbstractLinearSDE | None = None,
        *,
        num_projections: int = 1,
        projection: Literal["rademacher", "gaussian"] = "rademacher",
        variance_reduced: bool = True,
        eps: float | None = None,
    ):
        check_num("num_projections", num_projections)
        if projection not in ("rademacher", "gaussian"):
            raise ValueError(
                f"`projection` must be 'rademacher' or 'gaussian', got {projection!r}."
            )
        self.inputs = MaybeNoisy(self, sde, eps)
        self.num_projections, self.projection = num_projections, projection
        self.variance_reduced = variance_reduced

    def _probes(self, key, shape, dtype):
        shape = (self.num_projections, *shape)
        if self.projection == "rademacher":
            return jr.rademacher(key, shape, dtype)
        return normal(key, shape, dtype)

    def loss_one(self, model: Model, x: Data, key: PRNGKeyArray) -> Scalar:
        key_in, key_v = jr.split(key)
        t, x_in, w = self.inputs(x, key_in)
        f = lambda v: model(t, v)

        def one_probe(v):
            s, jv = jax.jvp(f, (x_in,), (v,))
            quadratic = 0.5 * (jnp.sum(s**2) if self.variance_reduced else jnp.sum(v * s) ** 2)
            return jnp.sum(v * jv) + quadratic

        probes = self._probes(key_v, x.shape, x.dtype)
        return w * jnp.mean(jax.vmap(one_probe)(probes))
