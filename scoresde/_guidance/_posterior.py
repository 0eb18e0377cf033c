r"""Posterior sampling by guidance: an unconditional score plus an approximation of the
likelihood's score, $\nabla_x \log p_t(x \mid y) = \nabla_x \log p_t(x) + \nabla_x \log
p_t(y \mid x)$. DPS, ΠGDM and TMPD differ only in how they approximate
$p_t(y \mid x_t) = \int p(y \mid x_0)\,p(x_0 \mid x_t)\,\mathrm dx_0$: each replaces
$p(x_0 \mid x_t)$ by a point mass or a Gaussian around Tweedie's denoiser
$\hat x_0(x_t) = (x_t + s(t)^2 \nabla \log p_t(x_t))/m(t)$."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._checks import check_callable, check_finite
from .._condition import AbstractConditionBoundary
from .._custom_types import Array, Data, Float, Scalar, ScalarLike
from .._numerics import small_eigh
from .._sde import AbstractLinearSDE
from ._observation import LinearObservation


def _check(sde, score, obs) -> None:
    if not isinstance(sde, AbstractLinearSDE):
        raise TypeError(
            f"`sde` must be a linear SDE (VPSDE, SubVPSDE, VESDE): guidance uses Tweedie's "
            f"denoiser, which needs m(t) and s(t); got {type(sde).__name__}."
        )
    check_callable(score)
    if not isinstance(obs, LinearObservation):
        raise TypeError(f"`obs` must be a LinearObservation, got {type(obs).__name__}.")


class AbstractPosteriorGuidance(AbstractConditionBoundary):
    r"""A conditional score `guided(t, x, y)` for posterior sampling under a linear
    observation: the unconditional `score` plus $\nabla_x \log \tilde p_t(y \mid x)$, a
    Gaussian approximation $\tilde p_t(y \mid x) = \mathcal N(y;\, A\hat x_0(x),\,
    \Sigma_t)$ of the likelihood of the noisy sample. Subclasses give $\Sigma_t$ (held
    fixed when differentiating, as the papers do) through `covariance_solve`.

    Every sampler takes it, with one observation per sample:
    `sample(sde, guided, sampler, shape, key=key, condition=Y)`.
    """

    sde: eqx.AbstractVar[AbstractLinearSDE]
    score: eqx.AbstractVar[Callable]
    obs: eqx.AbstractVar[LinearObservation]

    @abc.abstractmethod
    def covariance_solve(
        self, t: ScalarLike, x: Data, transposed_denoiser: Callable[[Data], Data]
    ) -> tuple[Callable[[Float[Array, " m"]], Float[Array, " m"]], Scalar]:
        r"""$(r \mapsto \Sigma_t^{-1} r,\; \log\det \Sigma_t)$ for the residuals
        $r = y - A\hat x_0$ at the observed entries (`obs.select`); `transposed_denoiser` is
        $v \mapsto (\partial \hat x_0/\partial x)^\top v$ at `x` (the VJP)."""

    def denoise(self, t: ScalarLike, x: Data) -> Data:
        r"""Tweedie's $\hat x_0(x) = (x + s(t)^2 \nabla\log p_t(x))/m(t)$."""
        m, s = self.sde.mean_coeff(t), self.sde.std(t)
        return ((x + (s**2).astype(x.dtype) * self.score(t, x)) / m).astype(x.dtype)

    def likelihood(self, t: ScalarLike, x: Data, y: Data) -> tuple[Scalar, Data, Data]:
        r"""$(\log\tilde p_t(y \mid x),\; \nabla_x \log\tilde p_t(y \mid x),\;
        \nabla_x \log p_t(x))$ from one evaluation of the score and its VJP."""
        self.obs.check(jnp.shape(x), jnp.shape(y))
        x0, pullback = jax.vjp(lambda z: self.denoise(t, z), x)
        transposed_denoiser = lambda v: pullback(v.astype(x.dtype))[0]
        residual = self.obs.select(y - self.obs(x0))
        solve, logdet = self.covariance_solve(t, x, transposed_denoiser)
        weighted = solve(residual)
        log_value = -0.5 * (
            jnp.dot(residual, weighted) + logdet + residual.size * jnp.log(2 * jnp.pi)
        )
        back = self.obs.operator.transpose().mv(self.obs.embed(weighted))
        grad = transposed_denoiser(back)
        m, s = self.sde.mean_coeff(t), self.sde.std(t)
        score = ((m * x0 - x) / s**2).astype(x.dtype)  # the score, recovered from x0
        return log_value, grad, score

    def __call__(self, t: ScalarLike, x: Data, y: Data) -> Data:
        _, grad, score = self.likelihood(t, x, y)
        return score + grad


class DPS(AbstractPosteriorGuidance):
    r"""Diffusion posterior sampling (Chung et al., 2023): $p(x_0 \mid x_t)$ replaced by a
    point mass at Tweedie's denoiser,

    $$\nabla_x \log p_t(x \mid y) \approx \nabla_x \log p_t(x) + \zeta\,\nabla_x
    \log \mathcal N(y;\, A\hat x_0(x),\, \sigma_y^2 I)
    = \nabla_x \log p_t(x) + \frac{\zeta}{\sigma_y^2}
    \Big(\frac{\partial \hat x_0}{\partial x}\Big)^{\!\top} A^\top (y - A\hat x_0).$$

    **Convention.** This is the paper's likelihood form (its eq. 16, with the Gaussian's
    $\tfrac12$ kept, so `scale` $= \zeta = 1$ is the plain approximation), a score that
    every sampler can use. The official code instead steps by
    $\zeta_i = \zeta'/\|y - A\hat x_0\|$ times the gradient of the residual's norm, a
    per-step rule tied to its ancestral sampler; it is not used here. The approximation
    ignores the spread of $p(x_0 \mid x_t)$, so DPS over-weights the likelihood at large
    $t$; it is biased whatever the number of steps.

    **Arguments:**

    - `sde`: the linear SDE of `score`.
    - `score`: the unconditional score `score(t, x)` of the prior.
    - `obs`: the [`LinearObservation`][scoresde.LinearObservation]; needs
      `noise_std > 0`.
    - `scale`: $\zeta$ (default 1).

    ??? cite "Reference"

        ```bibtex
        @inproceedings{chung2023diffusion,
          title={Diffusion Posterior Sampling for General Noisy Inverse Problems},
          author={Chung, Hyungjin and Kim, Jeongsol and Mccann, Michael Thompson and
                  Klasky, Marc Louis and Ye, Jong Chul},
          booktitle={ICLR}, year={2023}
        }
        ```
    """

    sde: AbstractLinearSDE
    score: Callable
    obs: LinearObservation
    scale: Array

    def __init__(self, sde: AbstractLinearSDE, score: Callable, obs, *, scale: float = 1.0):
        _check(sde, score, obs)
        obs.require_noise("DPS")
        self.sde, self.score, self.obs = sde, score, obs
        check_finite("scale", scale)
        self.scale = jnp.asarray(scale, dtype=float)

    def covariance_solve(self, t, x, transposed_denoiser):
        # Sigma = sigma_y^2 / zeta I: zeta scales the log-likelihood's gradient.
        var = (self.obs.noise_std**2 / self.scale).astype(x.dtype)
        return (lambda r: r / var), self.obs.observed_size() * jnp.log(var)


class PiGDM(AbstractPosteriorGuidance):
    r"""Pseudoinverse-guided diffusion models (ΠGDM; Song et al., 2023): $p(x_0 \mid x_t)$
    replaced by $\mathcal N(\hat x_0(x_t),\, r_t^2 I)$, the posterior of data of unit
    variance, so

    $$\tilde p_t(y \mid x) = \mathcal N\big(y;\, A\hat x_0(x),\, r_t^2 A A^\top +
    \sigma_y^2 I\big),\qquad r_t^2 = \frac{\sigma(t)^2}{1 + \sigma(t)^2} =
    \frac{s(t)^2}{m(t)^2 + s(t)^2}$$

    ($\sigma = s/m$ the noise-to-signal ratio; $r_t^2 = s(t)^2$ for the VP SDE). The
    covariance is held fixed in the gradient. Works with noiseless observations when
    $A$ has full row rank.

    **Arguments:**

    - `sde`, `score`, `obs`: as for [`DPS`][scoresde.DPS].

    ??? cite "Reference"

        ```bibtex
        @inproceedings{song2023pseudoinverse,
          title={Pseudoinverse-Guided Diffusion Models for Inverse Problems},
          author={Song, Jiaming and Vahdat, Arash and Mardani, Morteza and Kautz, Jan},
          booktitle={ICLR}, year={2023}
        }
        ```
    """

    sde: AbstractLinearSDE
    score: Callable
    obs: LinearObservation

    def __init__(self, sde: AbstractLinearSDE, score: Callable, obs):
        _check(sde, score, obs)
        self.sde, self.score, self.obs = sde, score, obs

    def covariance_solve(self, t, x, transposed_denoiser):
        m, s = self.sde.mean_coeff(t), self.sde.std(t)
        r2 = (s**2 / (m**2 + s**2)).astype(x.dtype)
        A = self.obs.observed_matrix().astype(x.dtype)
        return gaussian_solve(r2 * (A @ A.T), self.obs.noise_std.astype(x.dtype) ** 2)


class TMPD(AbstractPosteriorGuidance):
    r"""Tweedie moment projected diffusions (TMPD; Boys et al., 2023): $p(x_0 \mid x_t)$
    replaced by the Gaussian with its exact first two moments, by Tweedie's formulas
    $\mathbb E[x_0 \mid x_t] = \hat x_0$ and
    $\operatorname{Cov}[x_0 \mid x_t] = C_t = \frac{s(t)^2}{m(t)}
    \frac{\partial \hat x_0}{\partial x_t}$, so

    $$\tilde p_t(y \mid x) = \mathcal N\big(y;\, A\hat x_0(x),\, \sigma_y^2 I +
    A C_t A^\top\big).$$

    The covariance is held fixed in the gradient. For a Gaussian prior
    $p(x_0 \mid x_t)$ is Gaussian with exactly these moments and $C_t$ does not depend on
    $x_t$, so the guided score is the exact posterior score. $A C_t A^\top$ costs one
    vector–Jacobian product of the denoiser per observed coordinate ($m$ of them) at
    every evaluation.

    With a network the symmetrised $A C_t A^\top$ need not be positive semi-definite
    (the Jacobian of a learned denoiser is not a covariance, least at high noise); it is
    projected onto the positive semi-definite matrices (negative eigenvalues set to
    zero), which changes nothing where it is a covariance.

    **Arguments:**

    - `sde`, `score`, `obs`: as for [`DPS`][scoresde.DPS].

    ??? cite "Reference"

        ```bibtex
        @inproceedings{boys2023tweedie,
          title={Tweedie Moment Projected Diffusions for Inverse Problems},
          author={Boys, Benjamin and Girolami, Mark and Pidstrigach, Jakiw and
                  Reich, Sebastian and Mosca, Alan and Akyildiz, O. Deniz},
          journal={Transactions on Machine Learning Research}, year={2024}
        }
        ```
    """

    sde: AbstractLinearSDE
    score: Callable
    obs: LinearObservation

    def __init__(self, sde: AbstractLinearSDE, score: Callable, obs):
        _check(sde, score, obs)
        self.sde, self.score, self.obs = sde, score, obs

    def covariance_solve(self, t, x, transposed_denoiser):
        ACA = tmpd_covariance(self.sde, self.obs, t, x, transposed_denoiser)
        return gaussian_solve(ACA, self.obs.noise_std.astype(x.dtype) ** 2)


def gaussian_solve(cov: Float[Array, "m m"], noise_var: Scalar):
    r"""`(r -> Σ^{-1} r, log det Σ)` for $\Sigma = P(\text{cov}) + \sigma_y^2 I$, held
    fixed in gradients, where $P$ projects a symmetric matrix onto the positive
    semi-definite ones (its negative eigenvalues set to zero). The projection changes
    nothing where `cov` is a covariance (an exact score's $A C_t A^\top$ is one); a
    network's Jacobian is not symmetric positive semi-definite, least at high noise, and
    without it TMPD's Gaussian had a negative variance (a NaN Cholesky factor). Without
    noise, eigenvalues below $10^{-6}$ of the largest are raised to that floor (the
    pseudo-inverse's cut-off), so a direction the covariance cannot see gives a large,
    finite guidance rather than infinity."""
    lam, vec = small_eigh(jax.lax.stop_gradient(cov))
    lam = jnp.maximum(lam, 0.0) + noise_var
    lam = jnp.maximum(lam, 1e-6 * jnp.max(lam) + jnp.finfo(lam.dtype).tiny)
    solve = lambda r: jnp.sum(vec * (jnp.sum(vec * r[:, None], axis=0) / lam), axis=1)
    return solve, jnp.sum(jnp.log(lam))


def tmpd_covariance(sde, obs: LinearObservation, t, x: Data, transposed_denoiser) -> Array:
    r"""$A C_t A^\top$ with $C_t = (s^2/m)\,\partial\hat x_0/\partial x$ on the observed
    rows of $A$, symmetrised, from one VJP per row (the denoiser's pullback, already at hand:
    $[A J^\top A^\top]_{ij} = a_j \cdot J^\top a_i$, whose symmetric part is that of
    $A J A^\top$); held fixed (no gradient). VJPs, not JVPs: forward-mode through the
    batched triangular solves of a mixture's score, nested under the particle and sample
    vmaps, ran so slowly on XLA:CPU that a 16,000-particle step did not finish."""
    A = obs.observed_matrix().astype(x.dtype)
    rows = A.reshape((A.shape[0],) + x.shape)
    JtAt = jax.vmap(transposed_denoiser)(rows).reshape(A.shape[0], -1)  # row i: J^T a_i
    m, s = sde.mean_coeff(t), sde.std(t)
    ACA = (s**2 / m).astype(x.dtype) * (A @ JtAt.T)
    return jax.lax.stop_gradient(0.5 * (ACA + ACA.T))
