from ._base import AbstractExponentialSolver as AbstractExponentialSolver
from ._dpm_solver_pp import DDIM as DDIM, DPMSolverPP as DPMSolverPP
from ._unipc import UniPC as UniPC
