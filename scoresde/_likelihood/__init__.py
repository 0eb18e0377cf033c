from ._divergence import (
    AbstractDivergence as AbstractDivergence,
    ExactDivergence as ExactDivergence,
    HutchinsonDivergence as HutchinsonDivergence,
)
from ._encode import encode as encode
from ._log_prob import (
    bits_per_dim as bits_per_dim,
    EXACT_MAX_DIM as EXACT_MAX_DIM,
    log_prob as log_prob,
    LogProbResult as LogProbResult,
)
