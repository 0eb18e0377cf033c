from ._base import (
    AbstractLinearSDE as AbstractLinearSDE,
    AbstractSDE as AbstractSDE,
    PriorMismatchWarning as PriorMismatchWarning,
    ScoreFn as ScoreFn,
    warn_prior_mismatch as warn_prior_mismatch,
)
from ._brownian import GridBrownianPath as GridBrownianPath
from ._subvp import SubVPSDE as SubVPSDE
from ._terms import (
    AbstractScoreTerm as AbstractScoreTerm,
    ProbabilityFlowTerm as ProbabilityFlowTerm,
    ReverseDriftTerm as ReverseDriftTerm,
)
from ._ve import VESDE as VESDE
from ._vp import VPSDE as VPSDE
