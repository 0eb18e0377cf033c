import abc

import equinox as eqx

from .._custom_types import Batch, Data, PRNGKeyArray, Scalar, ScalarLike
from .._sde import AbstractLinearSDE


class AbstractExactScore(eqx.Module):
    r"""The exact score $\nabla_x \log p_t(x)$ of a known distribution pushed through a
    linear SDE, with its log-density and an exact sampler of $p_t$.

    Called as `score(t, x)` on ONE sample `x`, like every score in the library, so any
    sampler takes it unchanged. Used as ground truth: samplers are proven on exact scores
    before any network is trained.
    """

    sde: eqx.AbstractVar[AbstractLinearSDE]

    @abc.abstractmethod
    def log_prob(self, t: ScalarLike, x: Data) -> Scalar:
        r"""$\log p_t(x)$ for one sample `x`."""

    @abc.abstractmethod
    def __call__(self, t: ScalarLike, x: Data) -> Data:
        r"""$\nabla_x \log p_t(x)$ for one sample `x`."""

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, num: int, t: ScalarLike = 0.0) -> Batch:
        """`num` exact samples of $p_t$ (of the data distribution when `t = 0`)."""
