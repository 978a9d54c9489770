"""The training core: one grid point in, metrics out. No Ray, no Parquet, no sweeps."""

from trainers.checkpoint import Checkpoint
from trainers.compiles import compilation_counts
from trainers.config import TrialConfig
from trainers.train import TrainResult, train

__all__ = ["Checkpoint", "TrainResult", "TrialConfig", "compilation_counts", "train"]
