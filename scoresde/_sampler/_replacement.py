import jax
import jax.random as jr
import lineax as lx
import numpy as np

from .._checks import static_number
from .._custom_types import Array, Data, Float, PRNGKeyArray
from .._guidance import LinearObservation
from .._numerics import normal
from .._sde import AbstractLinearSDE, AbstractSDE
from ._base import (
    AbstractConditioningSampler,
    check_eps,
    check_num,
    initial_state,
    make_stats,
    nearest_steps,
    resolve_eps,
    scan_with_snapshots,
    ScoreFn,
    split2,
    Stats,
)
from ._grid import AbstractTimeGrid, check_grid, UniformGrid
from ._predictor_corrector import AbstractPredictor, ReverseDiffusionPredictor


class ReplacementInpainting(AbstractConditioningSampler):
    r"""Inpainting by replacement (Song et al., 2021, appendix I): the reverse diffusion of
    an UNCONDITIONAL score in which the observed coordinates are overwritten, after every
    step, by the observation noised to the current time.

    With a mask $M$ (ones where observed) and the observation $y$ on the observed
    coordinates:

    1. $x_T$ is a prior draw with its observed part replaced by $m(T)\,y + s(T)\,z$ (the
       observation noised to $T$, not the clean values);
    2. each step $t \to t'$ is one `predictor` step of the reverse SDE, then
       $x \leftarrow M \odot (m(t')\,y + s(t')\,z') + (1 - M) \odot x$ with fresh noise
       $z'$;
    3. at the end the observed values themselves are pasted back: $M \odot y$.

    It is cheap (one score evaluation per step) but not exact: the unobserved part is
    steered only through the score's response to the re-noised observed part, which
    carries a fresh draw of noise at every step instead of the one path consistent with
    $y$. Its samples are biased towards the prior where the two parts are strongly
    correlated (measured against the exact conditional of a Gaussian mixture in the
    tests); [`TwistedDiffusionSampler`][scoresde.TwistedDiffusionSampler] is exact in
    the limit.

    Takes one observation per sample, `condition=Y`, each of the data's shape (values at
    unobserved coordinates are ignored).

    **Arguments:**

    - `obs`: a [`LinearObservation`][scoresde.LinearObservation] whose operator is a mask,
      `lineax.DiagonalLinearOperator` of zeros and ones on one sample's shape. Its
      `noise_std` is ignored: replacement treats observed values as exact.
    - `num_steps`: reverse steps, on `grid`.
    - `predictor`: the reverse step
      ([`ReverseDiffusionPredictor`][scoresde.ReverseDiffusionPredictor]
      by default, or [`EulerMaruyamaPredictor`][scoresde.EulerMaruyamaPredictor]).
    - `grid`, `eps`: as for [`ReverseSDE`][scoresde.ReverseSDE].

    ??? cite "Reference"

        ```bibtex
        @inproceedings{song2021scorebased,
          title={Score-Based Generative Modeling through Stochastic Differential Equations},
          author={Song, Yang and Sohl-Dickstein, Jascha and Kingma, Diederik P and
                  Kumar, Abhishek and Ermon, Stefano and Poole, Ben},
          booktitle={ICLR}, year={2021}
        }
        ```
    """

    obs: LinearObservation
    num_steps: int = static_number(default=1000)
    predictor: AbstractPredictor = ReverseDiffusionPredictor()
    grid: AbstractTimeGrid = UniformGrid()
    eps: float | None = static_number(default=None)

    def __check_init__(self):
        if not isinstance(self.obs, LinearObservation):
            raise TypeError(f"`obs` must be a LinearObservation, got {type(self.obs).__name__}.")
        operator = self.obs.operator
        if not isinstance(operator, lx.DiagonalLinearOperator):
            raise TypeError(
                "ReplacementInpainting needs a mask: `obs.operator` must be a "
                "lineax.DiagonalLinearOperator of zeros and ones, got "
                f"{type(operator).__name__}."
            )
        mask = operator.diagonal
        if not isinstance(mask, jax.core.Tracer) and not np.all(
            np.isin(np.asarray(mask), (0.0, 1.0))
        ):
            raise ValueError("The mask (`obs.operator.diagonal`) must hold only zeros and ones.")
        check_num("num_steps", self.num_steps)
        if not isinstance(self.predictor, AbstractPredictor):
            raise TypeError(
                f"`predictor` must be an AbstractPredictor, got {type(self.predictor).__name__}."
            )

    def check(self, sde: AbstractSDE) -> None:
        if not isinstance(sde, AbstractLinearSDE):
            raise TypeError("ReplacementInpainting needs a linear SDE (it noises y to time t).")
        check_eps(sde, self.eps)
        check_grid(self.grid, sde, self.num_steps, resolve_eps(sde, self.eps))

    def check_condition(self, data_shape, condition) -> None:
        if not isinstance(condition, jax.ShapeDtypeStruct):
            raise ValueError("`condition` must be one array of observations, shape (n, *data).")
        self.obs.check(data_shape, condition.shape)

    def clock(self, sde: AbstractSDE) -> Float[Array, " n+1"]:
        return self.grid.times(sde, self.num_steps, resolve_eps(sde, self.eps))

    def sample_given(
        self,
        sde: AbstractSDE,
        score: ScoreFn,
        data_shape: tuple[int, ...],
        key: PRNGKeyArray,
        save_ts: Float[Array, " k"] | None,
        condition: Data,
        initial: Data | None = None,
    ) -> tuple[Data, Float[Array, "k *data"] | None, Stats]:
        assert isinstance(sde, AbstractLinearSDE)
        mask = self.obs.operator.diagonal.astype(condition.dtype)
        y = condition
        ts = self.clock(sde)
        key_init, key_steps = split2(key)

        def replace(x, t, key):
            noised = sde.mean_coeff(t) * y + sde.std(t) * normal(key, y.shape, y.dtype)
            return mask * noised.astype(x.dtype) + (1 - mask) * x

        key_prior, key_noise = split2(key_init)
        x0 = replace(initial_state(sde, key_prior, data_shape, initial=initial), ts[0], key_noise)

        def step(i, x):
            key_p, key_r = jr.split(jr.fold_in(key_steps, i))
            x = self.predictor.step(sde, score, ts[i], ts[i + 1], x, key_p)
            return replace(x, ts[i + 1], key_r)

        save_steps = None if save_ts is None else nearest_steps(ts, save_ts)
        x, traj = scan_with_snapshots(step, x0, self.num_steps, save_steps)
        x = mask * y + (1 - mask) * x
        return x, traj, make_stats(self.num_steps, 0, self.num_steps)
