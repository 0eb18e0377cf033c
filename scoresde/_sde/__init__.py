from ._base import (
    AbstractLinearSDE as AbstractLinearSDE,
    AbstractSDE as AbstractSDE,
    ScoreFn as ScoreFn,
)
from ._brownian import GridBrownianPath as GridBrownianPath
from ._subvp import SubVPSDE as SubVPSDE
from ._ve import VESDE as VESDE
from ._vp import VPSDE as VPSDE
