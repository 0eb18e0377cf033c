from ._checkpoint import (
    CheckpointError as CheckpointError,
    load_checkpoint as load_checkpoint,
    read_metadata as read_metadata,
    save_checkpoint as save_checkpoint,
)
from ._fit import (
    fit as fit,
    FitResult as FitResult,
    init_state as init_state,
    TrainState as TrainState,
)
from ._model_io import load_model as load_model, save_model as save_model
