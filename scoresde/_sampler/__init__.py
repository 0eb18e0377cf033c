from ._annealed_langevin import AnnealedLangevin as AnnealedLangevin
from ._base import (
    AbstractConditioningSampler as AbstractConditioningSampler,
    AbstractSampler as AbstractSampler,
)
from ._diffrax_sampler import AbstractDiffraxSampler as AbstractDiffraxSampler
from ._edm import EDMSampler as EDMSampler
from ._grid import (
    AbstractTimeGrid as AbstractTimeGrid,
    EDMGrid as EDMGrid,
    LogSNRGrid as LogSNRGrid,
    UniformGrid as UniformGrid,
)
from ._langevin import Langevin as Langevin
from ._predictor_corrector import (
    AbstractCorrector as AbstractCorrector,
    AbstractPredictor as AbstractPredictor,
    EulerMaruyamaPredictor as EulerMaruyamaPredictor,
    LangevinCorrector as LangevinCorrector,
    PredictorCorrector as PredictorCorrector,
    ReverseDiffusionPredictor as ReverseDiffusionPredictor,
)
from ._probability_flow import ProbabilityFlowODE as ProbabilityFlowODE
from ._replacement import ReplacementInpainting as ReplacementInpainting
from ._reverse_sde import ReverseSDE as ReverseSDE
from ._sample import sample as sample, SampleResult as SampleResult
from ._twisted import TwistedDiffusionSampler as TwistedDiffusionSampler
