"""The training core: one grid point in, metrics out. No Ray, no Parquet, no sweeps."""

from trainers.checkpoint import Checkpoint
from trainers.compiles import compilation_counts, training_loop_compilations
from trainers.config import TrialConfig
from trainers.train import TrainResult, batch_signature, train, train_group

__all__ = ["Checkpoint", "TrainResult", "TrialConfig", "batch_signature", "compilation_counts", "train", "train_group", "training_loop_compilations"]
