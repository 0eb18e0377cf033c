from ._base import AbstractExactScore as AbstractExactScore
from ._class_conditional import ClassConditionalMixture as ClassConditionalMixture
from ._empirical import EmpiricalScore as EmpiricalScore
from ._gaussian_mixture import GaussianMixtureScore as GaussianMixtureScore
from ._parameterisation import (
    AbstractParameterisation as AbstractParameterisation,
    DirectScore as DirectScore,
    EDMDenoiser as EDMDenoiser,
    NoisePrediction as NoisePrediction,
)
