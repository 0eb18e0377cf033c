"""UniPC: a unified predictor-corrector in the data-prediction form."""

import math
from typing import ClassVar, Literal

import equinox as eqx
import jax.numpy as jnp
from diffrax import RESULTS

from .._checks import static_number
from ._base import AbstractExponentialSolver, exprel, half_log_snr, unpack_terms


def _b_vector(hh, variant: str, n: int):
    r"""$b_i = i!\,\varphi_{i+1}(hh)\,hh / B(hh)$ for $i = 1..n$, with $hh = -h$ and
    $B(hh) = hh$ ("bh1") or $e^{hh} - 1$ ("bh2"), written with $\mathrm{exprel}$ so that
    nothing cancels at small $h$."""
    scale = 1.0 if variant == "bh1" else exprel(1, hh)
    return [math.factorial(i) * exprel(i + 1, hh) / scale for i in range(1, n + 1)]


def _det(rows):
    """The determinant of a small matrix given as lists of scalars (Laplace expansion)."""
    if len(rows) == 1:
        return rows[0][0]
    return sum(
        (-1) ** j * rows[0][j] * _det([r[:j] + r[j + 1 :] for r in rows[1:]])
        for j in range(len(rows))
    )


def _solve(rows, rhs):
    """Solves the small system `rows @ rho = rhs` (lists of scalars, at most 3 x 3) by
    Cramer's rule: scalar arithmetic that XLA fuses, where a LAPACK call per step would
    cost more than the rest of the step's coefficients."""
    det = _det(rows)
    cols = range(len(rows))
    return jnp.stack(
        [_det([[rhs[i] if j == k else rows[i][j] for j in cols] for i in cols]) / det for k in cols]
    )


def _weights(q, hh, rks, variant, corrector: bool, max_q: int):
    r"""Weights $\rho$ of the differences $D_k = (d_k - d_0)/r_k$ ($k = 1..q-1$, from the
    history) and, for the corrector, of $d_{new} - d_0$ (last entry), for a step of order
    `q` (traced) among 1..`max_q`; zero where a difference is not used."""
    size = max_q if corrector else max_q - 1
    out = jnp.zeros((max(size, 0),), hh.dtype)
    b = _b_vector(hh, variant, max_q)
    choices = []
    for order in range(1, max_q + 1):
        rho = jnp.zeros((max(size, 0),), hh.dtype)
        if corrector:
            if order == 1:
                # UniC-1 uses rho = 1/2 (Zhao et al.'s simplification).
                rho = rho.at[size - 1].set(0.5)
            else:
                r = [rks[k] for k in range(order - 1)] + [jnp.ones_like(hh)]
                rows = [[rk**i for rk in r] for i in range(order)]
                sol = _solve(rows, b[:order])
                rho = rho.at[: order - 1].set(sol[:-1]).at[size - 1].set(sol[-1])
        elif order == 2:
            rho = rho.at[0].set(0.5)
        elif order >= 3:
            r = [rks[k] for k in range(order - 1)]
            rows = [[rk**i for rk in r] for i in range(order - 1)]
            rho = rho.at[: order - 1].set(_solve(rows, b[: order - 1]))
        choices.append(rho)
    for order in range(1, max_q + 1):
        out = jnp.where(q == order, choices[order - 1], out)
    return out


class UniPC(AbstractExponentialSolver):
    r"""UniPC (Zhao et al. 2023), the unified predictor-corrector, as a Diffrax solver for
    [`ProbabilityFlowODE`][scoresde.ProbabilityFlowODE]: one score evaluation per step.

    Each step first corrects the previous one with the data prediction just evaluated
    (UniC, which raises the order by one at no extra evaluation), then predicts the next
    state from the corrected one (UniP, a multistep exponential integrator in $\lambda$,
    $x_b = \frac{s_b}{s_a}x_a + m_b(1 - e^{-h})D_a + m_b\,h\,B'(h)\sum_k\rho_k D_k$
    with $D_k$ the scaled differences of earlier data predictions). The last step is not
    corrected (that would need one more evaluation), and the state Diffrax reports at
    each grid time is the predicted one (the correction of step $k$ is made during step
    $k + 1$).

    Fixed steps only; probability-flow ODE only (there is no stochastic UniPC here: use
    [`DPMSolverPP`][scoresde.DPMSolverPP] with `ReverseSDE`); a linear SDE only.

    **Arguments:**

    - `order`: the predictor's order, 1, 2 or 3 (default 3); with the corrector the step
      is one order higher, and the observed convergence order is about `order`.
    - `variant`: $B(h)$, `"bh2"` ($e^{h} - 1$, default, as diffusers) or `"bh1"` ($h$,
      the paper's choice for unconditional sampling at very few steps).
    - `lower_order_final`: on solves of fewer than 15 steps, lower the order of the last
      steps (default `True`), as for [`DPMSolverPP`][scoresde.DPMSolverPP].

    ??? cite "Reference"

        ```bibtex
        @inproceedings{zhao2023unipc,
          title={UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
                 Diffusion Models},
          author={Zhao, Wenliang and Bai, Lujia and Rao, Yongming and Zhou, Jie and Lu,
                  Jiwen},
          booktitle={NeurIPS}, year={2023}
        }
        ```
    """

    solver_order: int = static_number()
    variant: Literal["bh1", "bh2"] = eqx.field(static=True)
    lower_order_final: bool = eqx.field(static=True)

    supports_sde: ClassVar[bool] = False

    def __init__(
        self,
        order: int = 3,
        *,
        variant: Literal["bh1", "bh2"] = "bh2",
        lower_order_final: bool = True,
    ):
        self.solver_order = order
        self.variant = variant
        self.lower_order_final = lower_order_final

    def __check_init__(self):
        if self.variant not in ("bh1", "bh2"):
            raise ValueError(f"`variant` must be 'bh1' or 'bh2', got {self.variant!r}.")

    @property
    def history_size(self) -> int:
        return self.solver_order

    def init(self, terms, t0, t1, y0, args):
        state = super().init(terms, t0, t1, y0, args)
        _, noise, _ = unpack_terms(terms)
        if noise is not None:
            raise TypeError(
                "UniPC integrates the probability-flow ODE; it has no stochastic variant "
                "here. Use DPMSolverPP or DDIM with ReverseSDE."
            )
        return {
            **state,
            "x_prev": jnp.zeros_like(y0),
            "t_prev": jnp.zeros((), jnp.result_type(t0)),
            "q_prev": jnp.ones((), jnp.int32),
        }

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del made_jump
        term, _, direction = unpack_terms(terms)
        sde = term.sde
        state = solver_state
        i, lams, ds = state["i"], state["lams"], state["ds"]
        dtype = y0.dtype
        max_q = self.solver_order
        ta, tb = t0 * direction, t1 * direction
        lam_a, lam_b = half_log_snr(sde, ta), half_log_snr(sde, tb)
        d_a = term.data_prediction(ta, y0, args)

        def ratios(h, lam0, first):
            # r_k = (λ_k - λ_0)/h for the history entries lams[first:]; a safe stand-in
            # where an entry does not exist yet (entry j holds step i - 1 - j; its weight
            # is then zero).
            return [jnp.where(j < i, (lams[j] - lam0) / h, -(j + 1.0)) for j in range(first, max_q)]

        # -- UniC: correct the step t_prev -> ta with d_a, at the previous step's order.
        t_prev, q_prev = state["t_prev"], state["q_prev"]
        h_c = lam_a - lams[0]
        h_c_safe = jnp.where(i > 0, h_c, 1.0)
        hh_c = -h_c_safe
        rks_c = ratios(h_c_safe, lams[0], 1)
        rho_c = _weights(q_prev, hh_c, rks_c, self.variant, True, max_q)
        s_prev = jnp.where(i > 0, sde.std(t_prev), 1.0)
        base_c = (sde.std(ta) / s_prev).astype(dtype) * state["x_prev"] + (
            sde.mean_coeff(ta) * -jnp.expm1(hh_c)
        ).astype(dtype) * ds[0]
        scale_c = sde.mean_coeff(ta) * h_c_safe * self._b_prime(hh_c)
        # sum_k rho_k (d_k - d_0)/r_k + rho_last (d_a - d_0), as weights on (d_a, ds).
        w_hist = jnp.zeros((max_q,), dtype)
        for k in range(1, max_q):
            w_hist = w_hist.at[k].set(rho_c[k - 1] / rks_c[k - 1])
        w_hist = w_hist.at[0].set(-jnp.sum(w_hist) - rho_c[max_q - 1])
        corr = rho_c[max_q - 1].astype(dtype) * d_a + jnp.tensordot(
            w_hist.astype(dtype), ds, axes=1
        )
        x_a = jnp.where(i > 0, base_c + scale_c.astype(dtype) * corr, y0)

        # -- UniP: predict tb from the corrected x_a, with d_a and the history.
        q = self.step_order(i, term.num_steps)
        h = lam_b - lam_a
        hh = -h
        rks_p = ratios(h, lam_a, 0)[: max_q - 1]
        y1 = (sde.std(tb) / sde.std(ta)).astype(dtype) * x_a + (
            sde.mean_coeff(tb) * -jnp.expm1(hh)
        ).astype(dtype) * d_a
        if max_q > 1:
            rho_p = _weights(q, hh, rks_p, self.variant, False, max_q)
            w_p = jnp.zeros((max_q,), dtype)
            for k in range(1, max_q):
                w_p = w_p.at[k - 1].set(rho_p[k - 1] / rks_p[k - 1])
            pred = -jnp.sum(w_p) * d_a + jnp.tensordot(w_p.astype(dtype), ds, axes=1)
            scale_p = sde.mean_coeff(tb) * h * self._b_prime(hh)
            y1 = y1 + scale_p.astype(dtype) * pred

        new_state = {
            "i": i + 1,
            "lams": jnp.concatenate([lam_a[None].astype(lams.dtype), lams[:-1]]),
            "ds": jnp.concatenate([d_a[None], ds[:-1]]),
            "x_prev": x_a,
            "t_prev": jnp.asarray(ta, state["t_prev"].dtype),
            "q_prev": q,
        }
        return y1, None, dict(y0=y0, y1=y1), new_state, RESULTS.successful

    def _b_prime(self, hh):
        """$B(hh)/hh$: 1 for "bh1", $\\mathrm{exprel}_1(hh)$ for "bh2"."""
        return jnp.ones_like(hh) if self.variant == "bh1" else exprel(1, hh)
