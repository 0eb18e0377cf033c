from ._classifier_free import ClassifierFreeGuidance as ClassifierFreeGuidance
from ._observation import LinearObservation as LinearObservation
from ._posterior import (
    AbstractPosteriorGuidance as AbstractPosteriorGuidance,
    DPS as DPS,
    PiGDM as PiGDM,
    TMPD as TMPD,
)
