"""Score parameterisations: turn a network into a score `score(t, x)`.

A network can be trained to output the score itself, the noise that was added, or a
preconditioned denoiser. Each wrapper here maps its network's output to the score, so every
sampler takes a trained model unchanged. A conditional network `net(t, x, c)` gives a
conditional score `score(t, x, c)`: the wrapper passes the condition through.
"""

import abc
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp

from .._checks import is_real, static_number
from .._custom_types import Data, Scalar, ScalarLike
from .._sde import AbstractLinearSDE, AbstractSDE


def _check_net(net) -> Callable:
    if not callable(net):
        raise TypeError(
            f"`net` must be a callable net(t, x) on one sample, got {type(net).__name__}."
        )
    return net


def _check_linear_sde(name: str, sde) -> AbstractLinearSDE:
    if not isinstance(sde, AbstractLinearSDE):
        kind = type(sde).__name__
        if isinstance(sde, AbstractSDE):
            raise TypeError(
                f"{name} needs the closed-form kernel x_t = m(t) x_0 + s(t) eps of an "
                f"AbstractLinearSDE (VPSDE, SubVPSDE, VESDE), got the non-linear {kind}; "
                "use DirectScore for a network that outputs the score itself."
            )
        raise TypeError(f"`sde` must be an AbstractLinearSDE such as VPSDE, got {kind}.")
    return sde


class AbstractParameterisation(eqx.Module):
    r"""A score $\nabla_x \log p_t(x)$ computed from a network's output.

    Called as `score(t, x)` on ONE sample `x`, like every score in the library. The network
    is the field `net`, itself called as `net(t, x)` on one sample; the training objectives
    differentiate through the wrapper, so a model is trained in the parameterisation it
    will be sampled with.
    """

    net: eqx.AbstractVar[Callable]

    @abc.abstractmethod
    def __call__(self, t: ScalarLike, x: Data, condition: Any = None) -> Data:
        r"""The score $\nabla_x \log p_t(x)$ at one sample `x` (of $p_t(x \mid c)$ for a
        conditional network, called with its condition `c`)."""

    def _net(self, t, x: Data, condition: Any) -> Data:
        """The network's output; the condition is passed on only when there is one."""
        return self.net(t, x) if condition is None else self.net(t, x, condition)


class DirectScore(AbstractParameterisation):
    r"""The network outputs the score itself: $s_\theta(t, x) = \text{net}(t, x)$.

    The parameterisation of the seeds (and of Song et al.'s NCSN). Denoising score
    matching with the weighting $\lambda(t) = s(t)^2$ makes the regression target
    $-\varepsilon / s(t)$, of unit scale at every $t$.

    **Arguments:**

    - `net`: a callable `net(t, x)` returning an array shaped like `x`.
    """

    net: Callable

    def __init__(self, net: Callable):
        self.net = _check_net(net)

    def __call__(self, t: ScalarLike, x: Data, condition: Any = None) -> Data:
        return self._net(t, x, condition)


class NoisePrediction(AbstractParameterisation):
    r"""The network predicts the noise $\varepsilon$ (DDPM's $\varepsilon$-prediction).

    Under the linear SDE's kernel $x_t = m(t)\,x_0 + s(t)\,\varepsilon$,
    $\varepsilon \sim \mathcal N(0, I)$, the conditional score is
    $\nabla_{x_t} \log p(x_t \mid x_0) = -\varepsilon / s(t)$, and the minimiser of
    $\mathbb E\,\|\hat\varepsilon(t, x_t) - \varepsilon\|^2$ is
    $\hat\varepsilon(t, x) = -s(t)\,\nabla_x \log p_t(x)$. Hence

    $$s_\theta(t, x) = -\frac{\hat\varepsilon_\theta(t, x)}{s(t)}.$$

    The network's output has unit scale at every $t$, and the score's $1/s(t)$ blow-up at
    small $t$ is carried by the formula, not learnt. Evaluate at $t > 0$, where $s(t) > 0$
    (samplers stop at `eps > 0`).

    **Arguments:**

    - `net`: a callable `net(t, x)` returning the noise estimate, shaped like `x`.
    - `sde`: the linear SDE ([`VPSDE`][scoresde.VPSDE], [`SubVPSDE`][scoresde.SubVPSDE],
      [`VESDE`][scoresde.VESDE]) the network was trained with; a `TypeError` otherwise.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{ho2020denoising,
          title={Denoising Diffusion Probabilistic Models},
          author={Ho, Jonathan and Jain, Ajay and Abbeel, Pieter},
          booktitle={NeurIPS}, year={2020}
        }
        ```
    """

    net: Callable
    sde: AbstractLinearSDE

    def __init__(self, net: Callable, sde: AbstractLinearSDE):
        self.net = _check_net(net)
        self.sde = _check_linear_sde("NoisePrediction", sde)

    def __call__(self, t: ScalarLike, x: Data, condition: Any = None) -> Data:
        eps = self._net(t, x, condition)
        return (-eps / self.sde.std(t)).astype(x.dtype)


class EDMDenoiser(AbstractParameterisation):
    r"""Karras et al.'s (2022) preconditioned denoiser, in the variance-exploding frame.

    **The frame.** The linear SDE's kernel $x_t = m(t)\,x_0 + s(t)\,\varepsilon$ becomes a
    variance-exploding one after rescaling: with $\sigma = s(t)/m(t)$ and
    $\hat x = x_t / m(t)$,

    $$\hat x = x_0 + \sigma\,\varepsilon,\qquad \varepsilon \sim \mathcal N(0, I).$$

    **The denoiser.** The network $F$ is wrapped as

    $$D(\hat x; \sigma) = c_\text{skip}(\sigma)\,\hat x
      + c_\text{out}(\sigma)\,F\big(c_\text{noise}(\sigma),\; c_\text{in}(\sigma)\,\hat x\big),$$

    $$c_\text{skip} = \frac{\sigma_d^2}{\sigma^2 + \sigma_d^2},\quad
      c_\text{out} = \frac{\sigma\,\sigma_d}{\sqrt{\sigma^2 + \sigma_d^2}},\quad
      c_\text{in} = \frac{1}{\sqrt{\sigma^2 + \sigma_d^2}},\quad
      c_\text{noise} = \tfrac14 \ln \sigma,$$

    where $\sigma_d$ is the data's standard deviation. For data of that scale the network's
    input $c_\text{in}\hat x$ and its regression target $(x_0 - c_\text{skip}\hat x) /
    c_\text{out}$ have unit variance at every noise level.

    **The network's time argument is $c_\text{noise} = \tfrac14\ln\sigma$, not $t$:** the
    wrapper calls `net(c_noise, c_in * x_hat)`. For $\sigma \in [0.002, 80]$ this is
    $c_\text{noise} \in [-1.55, 1.10]$, an $O(1)$ range that the library's time embeddings
    (built for $t \in [0, 1]$) handle; it makes one network usable with any SDE, since it
    sees only $\sigma$.

    **The score.** Tweedie's formula gives the score of $\hat p_\sigma$, the density of
    $\hat x$, from the optimal denoiser $D = \mathbb E[x_0 \mid \hat x]$:
    $\nabla_{\hat x} \log \hat p_\sigma(\hat x) = (D - \hat x)/\sigma^2$. Since
    $p_t(x) = m^{-d}\,\hat p_\sigma(x/m)$,

    $$\nabla_x \log p_t(x) = \frac1m\,\frac{D - x/m}{\sigma^2}
      = \frac{m(t)\,D(x/m(t);\,\sigma) - x}{s(t)^2}.$$

    Evaluate at $t > 0$, where $\sigma > 0$ (samplers stop at `eps > 0`).
    [`denoise`][scoresde.EDMDenoiser.denoise] gives $D$ itself, the estimate of $x_0$.

    **Arguments:**

    - `net`: a callable `net(c_noise, y)` with a scalar `c_noise` and `y` shaped like one
      sample, returning an array of the same shape.
    - `sde`: the linear SDE supplying $m(t)$ and $s(t)$; a `TypeError` otherwise.
    - `sigma_data`: $\sigma_d > 0$, the standard deviation of the data (0.5 for images
      scaled to $[-1, 1]$). A static float, not a trained parameter.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{karras2022elucidating,
          title={Elucidating the Design Space of Diffusion-Based Generative Models},
          author={Karras, Tero and Aittala, Miika and Aila, Timo and Laine, Samuli},
          booktitle={NeurIPS}, year={2022}
        }
        ```
    """

    net: Callable
    sde: AbstractLinearSDE
    sigma_data: float = static_number()

    def __init__(self, net: Callable, sde: AbstractLinearSDE, *, sigma_data: float = 0.5):
        self.net = _check_net(net)
        self.sde = _check_linear_sde("EDMDenoiser", sde)
        if not is_real(sigma_data) or not math.isfinite(sigma_data) or sigma_data <= 0:
            raise ValueError(
                "`sigma_data` must be a positive finite float, the standard deviation of the "
                f"data (0.5 for images in [-1, 1]), got {sigma_data!r}."
            )
        self.sigma_data = float(sigma_data)

    def preconditioning(self, sigma: ScalarLike) -> tuple[Scalar, Scalar, Scalar, Scalar]:
        r"""$(c_\text{skip}, c_\text{out}, c_\text{in}, c_\text{noise})$ at noise level
        $\sigma$."""
        sigma = jnp.asarray(sigma, dtype=jnp.result_type(float))
        sd2 = self.sigma_data**2
        var = sigma**2 + sd2
        c_skip = sd2 / var
        c_out = sigma * self.sigma_data * jnp.reciprocal(jnp.sqrt(var))
        c_in = jnp.reciprocal(jnp.sqrt(var))
        c_noise = 0.25 * jnp.log(sigma)
        return c_skip, c_out, c_in, c_noise

    def denoise(self, t: ScalarLike, x: Data, condition: Any = None) -> Data:
        r"""$D(x/m(t);\,\sigma(t))$: the network's estimate of $x_0$ given $x_t = x$."""
        m = self.sde.mean_coeff(t)
        x_hat = x / m
        c_skip, c_out, c_in, c_noise = self.preconditioning(self.sde.sigma(t))
        f = self._net(c_noise, (c_in * x_hat).astype(x.dtype), condition)
        return (c_skip * x_hat + c_out * f).astype(x.dtype)

    def __call__(self, t: ScalarLike, x: Data, condition: Any = None) -> Data:
        m, s = self.sde.mean_coeff(t), self.sde.std(t)
        return ((m * self.denoise(t, x, condition) - x) / s**2).astype(x.dtype)
