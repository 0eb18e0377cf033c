"""Linear observations $y = A x + \\sigma_y \\varepsilon$ of one sample."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from .._checks import check_finite
from .._custom_types import Array, Data, Float, PRNGKeyArray, Scalar
from .._numerics import normal


class LinearObservation(eqx.Module):
    r"""A linear observation with Gaussian noise of ONE sample $x$:

    $$y = A x + \sigma_y\,\varepsilon,\qquad \varepsilon \sim \mathcal N(0, I),$$

    so $p(y \mid x) = \mathcal N(y;\, A x,\, \sigma_y^2 I)$. $A$ is a lineax operator from
    the data's structure (a vector `(d,)`, an image `(C, H, W)`) to the observation's: a
    matrix, a mask (`lineax.DiagonalLinearOperator` of zeros and ones: inpainting), a blur
    or a down-sampling (`lineax.FunctionLinearOperator`), or any composition of them.

    **Arguments:**

    - `operator`: an `(m, d)` matrix (NumPy or JAX), or any `lineax.AbstractLinearOperator`
      whose input structure is one sample's shape.
    - `noise_std`: $\sigma_y \ge 0$ (an array leaf: changing it does not recompile).
      Noiseless observations ($\sigma_y = 0$) are exact constraints; the methods that need
      a likelihood with noise say so at the call.

    **Masks.** The zeros of a concrete mask (`lineax.DiagonalLinearOperator`), and the zero
    rows of a matrix, are outputs that observe nothing: the likelihood, TMPD's and ΠGDM's
    covariances and TDS's weights use only the observed entries (`observed`), so a mask
    costs what its observed pixels cost and its hidden pixels add no constant to
    $\log p(y)$.
    """

    operator: lx.AbstractLinearOperator
    noise_std: Array
    observed: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, operator, noise_std: float = 0.0):
        if isinstance(operator, (np.ndarray, jax.Array)):
            if np.ndim(operator) != 2:
                raise ValueError(
                    f"`operator` as an array must be an (m, d) matrix, got shape "
                    f"{np.shape(operator)}; for images pass a lineax operator on (C, H, W)."
                )
            operator = lx.MatrixLinearOperator(jnp.asarray(operator, dtype=float))
        if not isinstance(operator, lx.AbstractLinearOperator):
            raise TypeError(
                "`operator` must be an (m, d) matrix or a lineax.AbstractLinearOperator, got "
                f"{type(operator).__name__}."
            )
        if not isinstance(operator.in_structure(), jax.ShapeDtypeStruct) or not isinstance(
            operator.out_structure(), jax.ShapeDtypeStruct
        ):
            raise TypeError("`operator` must map one array to one array (not pytrees).")
        if isinstance(noise_std, bool) or not isinstance(
            noise_std, (int, float, np.ndarray, jax.Array)
        ):
            raise TypeError(f"`noise_std` must be a number >= 0, got {type(noise_std).__name__}.")
        check_finite("noise_std", noise_std)
        noise_std = jnp.asarray(noise_std, dtype=float)
        if noise_std.ndim != 0 or not (
            isinstance(noise_std, jax.core.Tracer) or bool(noise_std >= 0)
        ):
            raise ValueError(f"`noise_std` must be a scalar >= 0, got {noise_std}.")
        self.operator = operator
        self.noise_std = noise_std
        self.observed = _observed_entries(operator)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one sample $x$ (the operator's input)."""
        return tuple(self.operator.in_structure().shape)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """The shape of one observation $y$ (the operator's output)."""
        return tuple(self.operator.out_structure().shape)

    @property
    def noiseless(self) -> bool:
        """Whether $\\sigma_y = 0$ (known only for a concrete `noise_std`)."""
        return not isinstance(self.noise_std, jax.core.Tracer) and float(self.noise_std) == 0.0

    def matrix(self) -> Float[Array, "m d"]:
        """$A$ as a dense `(m, d)` matrix on flattened samples and observations."""
        return self.operator.as_matrix()

    def observed_size(self) -> int:
        """The number of observed entries $m$ (a mask's nonzeros)."""
        return len(self.observed) if self.observed is not None else self._num_outputs()

    def _num_outputs(self) -> int:
        return int(np.prod(self.observation_shape))

    def observed_matrix(self) -> Float[Array, "m d"]:
        """The rows of $A$ that observe something, dense, on flattened samples."""
        A = self.matrix()
        return A if self.observed is None else A[np.asarray(self.observed)]

    def select(self, v: Data) -> Float[Array, " m"]:
        """The observed entries of an output-shaped `v`, flattened."""
        flat = v.reshape(-1)
        return flat if self.observed is None else flat[np.asarray(self.observed)]

    def embed(self, v: Float[Array, " m"]) -> Data:
        """The inverse of `select`: observed entries placed in an output-shaped array of
        zeros."""
        if self.observed is None:
            return v.reshape(self.observation_shape)
        flat = jnp.zeros(self._num_outputs(), v.dtype).at[np.asarray(self.observed)].set(v)
        return flat.reshape(self.observation_shape)

    def __call__(self, x: Data) -> Data:
        """$A x$ for one sample (no noise)."""
        return self.operator.mv(x)

    def sample(self, key: PRNGKeyArray, x: Data) -> Data:
        """One noisy observation $y = A x + \\sigma_y \\varepsilon$ of one sample `x` (a
        mask's hidden entries stay 0)."""
        ax = self.operator.mv(x)
        noise = self.embed(self.select(normal(key, ax.shape, ax.dtype)))  # hidden: 0
        return ax + self.noise_std.astype(ax.dtype) * noise

    def log_likelihood(self, x: Data, y: Data) -> Scalar:
        """$\\log \\mathcal N(y;\\, A x,\\, \\sigma_y^2 I)$ over the observed entries
        (needs $\\sigma_y > 0$)."""
        r = self.select(y - self.operator.mv(x))
        var = self.noise_std.astype(r.dtype) ** 2
        return -0.5 * (jnp.sum(r**2) / var + r.size * jnp.log(2 * jnp.pi * var))

    def check(self, data_shape: tuple[int, ...], y_shape: tuple[int, ...] | None = None) -> None:
        """Raises at the call if the operator does not act on samples of `data_shape`, or
        if one observation's shape is not the operator's output."""
        if tuple(data_shape) != self.data_shape:
            raise ValueError(
                f"The observation operator acts on samples of shape {self.data_shape}, but the "
                f"data has shape {tuple(data_shape)}; build the operator on one sample's "
                "structure."
            )
        if y_shape is not None and tuple(y_shape) != self.observation_shape:
            raise ValueError(
                f"`y` (one observation) must have the operator's output shape "
                f"{self.observation_shape}, got {tuple(y_shape)}."
            )

    def require_noise(self, who: str) -> None:
        if self.noiseless:
            raise ValueError(
                f"{who} needs a noisy observation (noise_std > 0): its likelihood "
                "N(y; A x, noise_std^2 I) is a point mass when noise_std = 0."
            )


def _observed_entries(operator: lx.AbstractLinearOperator) -> tuple[int, ...] | None:
    """The outputs that observe something: the nonzeros of a concrete mask
    (`DiagonalLinearOperator`) or the nonzero rows of a concrete matrix; None (all of
    them, or not known before tracing) otherwise."""
    if isinstance(operator, lx.DiagonalLinearOperator):
        values = operator.diagonal
    elif isinstance(operator, lx.MatrixLinearOperator):
        values = operator.matrix
    else:
        return None
    if isinstance(values, jax.core.Tracer):
        return None
    values = np.asarray(values)
    rows = values.reshape(-1) if values.ndim != 2 else np.any(values, axis=1)
    nonzero = np.flatnonzero(rows != 0)
    return None if nonzero.size == rows.size else tuple(int(i) for i in nonzero)
