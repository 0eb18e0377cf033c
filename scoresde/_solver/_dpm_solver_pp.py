"""DPM-Solver++ multistep (and DDIM, its first order) in the data-prediction form."""

import equinox as eqx
import jax.numpy as jnp
from diffrax import RESULTS

from .._checks import static_number
from ._base import AbstractExponentialSolver, exprel, half_log_snr, standard_normal, unpack_terms


def _dpm_weights(q, h, big_h, lams, lam_a):
    """Weights of `(d_a, d_1, d_2)` (the data prediction now and at the two previous
    steps) in the deterministic part of a DPM-Solver++ step of order `q` (1, 2 or 3), to be
    multiplied by $m_b$. `big_h` is $(1 + \\eta) h$ ($h$ for the ODE, $2h$ for the SDE)."""
    one_minus = -jnp.expm1(-big_h)  # 1 - e^{-H}
    zero = jnp.zeros_like(h)
    # First order (DDIM): x̂₀ held constant over the step.
    w1 = jnp.stack([one_minus, zero, zero])
    if lams.shape[0] == 0:
        return w1
    # Second order, the "midpoint" form of Lu et al. (and k-diffusion's 2M): the slope
    # from the previous step, weighted by (1 - e^{-H}) / 2.
    h0 = lam_a - lams[0]
    r0 = jnp.where(h0 != 0, h0 / h, 1.0)
    c2 = 0.5 * one_minus / r0
    w2 = jnp.stack([one_minus + c2, -c2, zero])
    if lams.shape[0] == 1:
        return jnp.where(q >= 2, w2, w1)
    # Third order: the quadratic through the last three data predictions. D1 ≈ h x̂₀' and
    # D2 ≈ h² x̂₀''/2, whose exact weights are phi_2(H) and -h²phi_3(H)/(h²/2) =
    # 2 H exprel_3(-H) (the integral of e^{λ-λ_b}(λ-λ_a)²/2 over the step, over h²/2).
    # Lu et al.'s reference code and k-diffusion's 3M weigh D2 by -phi_3(H), half of
    # this; measured on a 2-D mixture (VP, log-SNR grid, 32..256 steps, float64) that
    # converges at order 2.1, and this weight at order 3.0.
    h1 = lams[0] - lams[1]
    r1 = jnp.where(h1 != 0, h1 / h, 1.0)
    a = jnp.stack([1 / r0, -1 / r0 - 1 / r1, 1 / r1])  # D1_0 - D1_1
    d1_0 = jnp.stack([1 / r0, -1 / r0, zero])
    d1 = d1_0 + r0 / (r0 + r1) * a
    d2 = a / (r0 + r1)
    phi2 = big_h * exprel(2, -big_h)
    phi3 = 2 * big_h * exprel(3, -big_h)
    w3 = w1 + phi2 * d1 + phi3 * d2
    return jnp.where(q >= 3, w3, jnp.where(q >= 2, w2, w1))


def dpm_solver_pp_step(solver, terms, t0, t1, y0, args, state):
    """One step of DPM-Solver++ of order up to `solver.solver_order`: deterministic with
    the probability-flow term, SDE-DPM-Solver++ (η = 1) with the reverse SDE's terms."""
    term, noise, direction = unpack_terms(terms)
    sde = term.sde
    ta, tb = t0 * direction, t1 * direction
    lam_a, lam_b = half_log_snr(sde, ta), half_log_snr(sde, tb)
    h = lam_b - lam_a
    d_a = term.data_prediction(ta, y0, args)
    q = solver.step_order(state["i"], term.num_steps)
    s_ratio = sde.std(tb) / sde.std(ta)
    m_b = sde.mean_coeff(tb)
    if noise is None:
        big_h, c_x = h, s_ratio
    else:
        # SDE-DPM-Solver++ with η = 1: the reverse SDE's own noise, e^{-h} more contraction.
        big_h, c_x = 2 * h, s_ratio * jnp.exp(-h)
    lams, ds = state["lams"], state["ds"]
    w = m_b * _dpm_weights(q, h, big_h, lams, lam_a)
    dtype = y0.dtype
    y1 = c_x.astype(dtype) * y0 + w[0].astype(dtype) * d_a
    k = lams.shape[0]
    if k:
        y1 = y1 + jnp.tensordot(w[1 : 1 + k].astype(dtype), ds, axes=1)
    if noise is not None:
        z = standard_normal(noise, t0, t1)
        y1 = y1 + (sde.std(tb) * jnp.sqrt(-jnp.expm1(-2 * h))).astype(dtype) * z
    new_state = {
        "i": state["i"] + 1,
        "lams": jnp.concatenate([lam_a[None].astype(lams.dtype), lams[:-1]]) if k else lams,
        "ds": jnp.concatenate([d_a[None], ds[:-1]]) if k else ds,
    }
    return y1, None, dict(y0=y0, y1=y1), new_state, RESULTS.successful


class DPMSolverPP(AbstractExponentialSolver):
    r"""DPM-Solver++ multistep (Lu et al. 2022), order 1, 2 or 3, as a Diffrax solver for
    [`ProbabilityFlowODE`][scoresde.ProbabilityFlowODE] and, as SDE-DPM-Solver++,
    [`ReverseSDE`][scoresde.ReverseSDE]; one score evaluation per step.

    With $h = \lambda_b - \lambda_a$ (half log-SNR) and the data predictions $D_a$, $D_1$,
    $D_2$ at this and the two previous steps, the ODE step of order 2 ("2M") is

    $$x_b = \frac{s_b}{s_a} x_a + m_b (1 - e^{-h})\Big(D_a + \frac{1}{2r}(D_a -
    D_1)\Big),\qquad r = \frac{\lambda_a - \lambda_1}{h};$$

    order 1 is DDIM, and order 3 adds the quadratic through $D_a, D_1, D_2$ with its
    exact weight. The first steps have no history and take lower orders. With the reverse
    SDE's terms (η = 1) the step is $x_b = \frac{s_b}{s_a}e^{-h}x_a + m_b(\dots)_{H=2h} +
    s_b\sqrt{1 - e^{-2h}}\,z$, $z$ from the solve's Brownian increment: DPM-Solver++(2M)
    SDE at order 2, the ancestral DDIM step at order 1.

    Fixed steps only (place them with `grid=sd.LogSNRGrid()` for equal $h$); a linear
    SDE only (VP, sub-VP, VE).

    **Arguments:**

    - `order`: 1, 2 (default) or 3.
    - `lower_order_final`: on solves of fewer than 15 steps, take the last steps at lower
      order (the last at order 1, the one before at most 2), as k-diffusion and diffusers
      do: at few steps the last steps are long and high order is unstable there
      (default `True`).

    ??? cite "Reference"

        ```bibtex
        @article{lu2022dpmsolverpp,
          title={DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
                 Models},
          author={Lu, Cheng and Zhou, Yuhao and Bao, Fan and Chen, Jianfei and Li,
                  Chongxuan and Zhu, Jun},
          journal={arXiv:2211.01095}, year={2022}
        }
        ```
    """

    solver_order: int = static_number()
    lower_order_final: bool = eqx.field(static=True)

    def __init__(self, order: int = 2, *, lower_order_final: bool = True):
        self.solver_order = order
        self.lower_order_final = lower_order_final

    @property
    def history_size(self) -> int:
        return self.solver_order - 1

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del made_jump
        return dpm_solver_pp_step(self, terms, t0, t1, y0, args, solver_state)


class DDIM(AbstractExponentialSolver):
    r"""DDIM (Song, Meng & Ermon 2021) as a Diffrax solver: the first-order exponential
    integrator in the data prediction, one score evaluation per step.

    With [`ProbabilityFlowODE`][scoresde.ProbabilityFlowODE] it is deterministic DDIM
    (η = 0), $x_b = \frac{s_b}{s_a}x_a + m_b(1 - e^{-h})\hat x_0(x_a)$; with
    [`ReverseSDE`][scoresde.ReverseSDE] it is ancestral DDIM (η = 1),
    $x_b = m_b \hat x_0 + s_b e^{-h}\hat\epsilon + s_b\sqrt{1 - e^{-2h}}\,z$, which is
    also the exact Gaussian posterior step $q(x_b \mid x_a, \hat x_0)$ of the SDE.
    Equal to `DPMSolverPP(order=1)`.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{song2021ddim,
          title={Denoising Diffusion Implicit Models},
          author={Song, Jiaming and Meng, Chenlin and Ermon, Stefano},
          booktitle={ICLR}, year={2021}
        }
        ```
    """

    @property
    def solver_order(self) -> int:
        return 1

    @property
    def lower_order_final(self) -> bool:
        return False

    @property
    def history_size(self) -> int:
        return 0

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del made_jump
        return dpm_solver_pp_step(self, terms, t0, t1, y0, args, solver_state)
