"""Score-based generative modelling on JAX, Equinox, Diffrax and Optax."""

import importlib.metadata

from . import datasets as datasets, metrics as metrics, nn as nn, plotting as plotting
from ._condition import AbstractClassConditional as AbstractClassConditional
from ._guidance import (
    AbstractPosteriorGuidance as AbstractPosteriorGuidance,
    ClassifierFreeGuidance as ClassifierFreeGuidance,
    DPS as DPS,
    LinearObservation as LinearObservation,
    PiGDM as PiGDM,
    TMPD as TMPD,
)
from ._likelihood import (
    AbstractDivergence as AbstractDivergence,
    bits_per_dim as bits_per_dim,
    encode as encode,
    ExactDivergence as ExactDivergence,
    HutchinsonDivergence as HutchinsonDivergence,
    log_prob as log_prob,
    LogProbResult as LogProbResult,
)
from ._ncsnv2 import (
    geometric_ratio as geometric_ratio,
    langevin_step_size as langevin_step_size,
    max_pairwise_distance as max_pairwise_distance,
    ncsnv2_hyperparameters as ncsnv2_hyperparameters,
    NCSNv2Hyperparameters as NCSNv2Hyperparameters,
)
from ._objective import (
    AbstractObjective as AbstractObjective,
    DenoisingScoreMatching as DenoisingScoreMatching,
    ImplicitScoreMatching as ImplicitScoreMatching,
    MultiNoiseDSM as MultiNoiseDSM,
    SlicedScoreMatching as SlicedScoreMatching,
)
from ._sampler import (
    AbstractConditioningSampler as AbstractConditioningSampler,
    AbstractCorrector as AbstractCorrector,
    AbstractDiffraxSampler as AbstractDiffraxSampler,
    AbstractPredictor as AbstractPredictor,
    AbstractSampler as AbstractSampler,
    AbstractTimeGrid as AbstractTimeGrid,
    AnnealedLangevin as AnnealedLangevin,
    EDMGrid as EDMGrid,
    EDMSampler as EDMSampler,
    EulerMaruyamaPredictor as EulerMaruyamaPredictor,
    Langevin as Langevin,
    LangevinCorrector as LangevinCorrector,
    LogSNRGrid as LogSNRGrid,
    PredictorCorrector as PredictorCorrector,
    ProbabilityFlowODE as ProbabilityFlowODE,
    ReplacementInpainting as ReplacementInpainting,
    ReverseDiffusionPredictor as ReverseDiffusionPredictor,
    ReverseSDE as ReverseSDE,
    sample as sample,
    SampleResult as SampleResult,
    TwistedDiffusionSampler as TwistedDiffusionSampler,
    UniformGrid as UniformGrid,
)
from ._score import (
    AbstractExactScore as AbstractExactScore,
    AbstractParameterisation as AbstractParameterisation,
    ClassConditionalMixture as ClassConditionalMixture,
    DirectScore as DirectScore,
    EDMDenoiser as EDMDenoiser,
    EmpiricalScore as EmpiricalScore,
    GaussianMixtureScore as GaussianMixtureScore,
    NoisePrediction as NoisePrediction,
)
from ._sde import (
    AbstractLinearSDE as AbstractLinearSDE,
    AbstractScoreTerm as AbstractScoreTerm,
    AbstractSDE as AbstractSDE,
    GridBrownianPath as GridBrownianPath,
    PriorMismatchWarning as PriorMismatchWarning,
    ProbabilityFlowTerm as ProbabilityFlowTerm,
    ReverseDriftTerm as ReverseDriftTerm,
    SubVPSDE as SubVPSDE,
    VESDE as VESDE,
    VPSDE as VPSDE,
    warn_prior_mismatch as warn_prior_mismatch,
)
from ._solver import (
    AbstractExponentialSolver as AbstractExponentialSolver,
    DDIM as DDIM,
    DPMSolverPP as DPMSolverPP,
    UniPC as UniPC,
)
from ._train import (
    CheckpointError as CheckpointError,
    fit as fit,
    FitResult as FitResult,
    load_checkpoint as load_checkpoint,
    load_model as load_model,
    read_metadata as read_metadata,
    save_checkpoint as save_checkpoint,
    save_model as save_model,
    TrainState as TrainState,
)


__version__ = importlib.metadata.version("scoresde")
