from ._base import AbstractObjective as AbstractObjective
from ._denoising import DenoisingScoreMatching as DenoisingScoreMatching
from ._implicit import ImplicitScoreMatching as ImplicitScoreMatching
from ._multi_noise import MultiNoiseDSM as MultiNoiseDSM
from ._sliced import SlicedScoreMatching as SlicedScoreMatching
