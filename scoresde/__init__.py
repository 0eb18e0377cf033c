"""Score-based generative modelling on JAX, Equinox, Diffrax and Optax."""

import importlib.metadata

from ._sampler import (
    AbstractCorrector as AbstractCorrector,
    AbstractPredictor as AbstractPredictor,
    AbstractSampler as AbstractSampler,
    AbstractTimeGrid as AbstractTimeGrid,
    AnnealedLangevin as AnnealedLangevin,
    EDMGrid as EDMGrid,
    EulerMaruyamaPredictor as EulerMaruyamaPredictor,
    Langevin as Langevin,
    LangevinCorrector as LangevinCorrector,
    LogSNRGrid as LogSNRGrid,
    PredictorCorrector as PredictorCorrector,
    ProbabilityFlowODE as ProbabilityFlowODE,
    ReverseDiffusionPredictor as ReverseDiffusionPredictor,
    ReverseSDE as ReverseSDE,
    sample as sample,
    SampleResult as SampleResult,
    UniformGrid as UniformGrid,
)
from ._score import (
    AbstractExactScore as AbstractExactScore,
    EmpiricalScore as EmpiricalScore,
    GaussianMixtureScore as GaussianMixtureScore,
)
from ._sde import (
    AbstractLinearSDE as AbstractLinearSDE,
    AbstractSDE as AbstractSDE,
    GridBrownianPath as GridBrownianPath,
    SubVPSDE as SubVPSDE,
    VESDE as VESDE,
    VPSDE as VPSDE,
)


__version__ = importlib.metadata.version("scoresde")
