"""Array aliases shared by every module.

`Data` is ONE sample (any shape: a vector, an image); `Batch` has a leading sample axis.
"""

import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, Real


Scalar = Float[Array, ""]
ScalarLike = float | int | Real[ArrayLike, ""]
Data = Float[Array, "*data"]
Batch = Float[Array, "n *data"]
FloatArrayLike = Float[Array, "..."] | Float[np.ndarray, "..."]

__all__ = [
    "Array",
    "ArrayLike",
    "Batch",
    "Bool",
    "Data",
    "Float",
    "FloatArrayLike",
    "Int",
    "PRNGKeyArray",
    "Scalar",
    "ScalarLike",
]
