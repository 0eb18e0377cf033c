from ._base import AbstractExactScore as AbstractExactScore
from ._empirical import EmpiricalScore as EmpiricalScore
from ._gaussian_mixture import GaussianMixtureScore as GaussianMixtureScore
