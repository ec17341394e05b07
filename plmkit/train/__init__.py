"""Training engine: one loop for every family member (DESIGN.md, "Training engine")."""

from .config import TrainConfig
from .distributed import init_distributed
from .schedules import discriminative_param_groups
from .selection import DevSelection
from .trainer import Trainer

__all__ = ["DevSelection", "TrainConfig", "Trainer", "init_distributed", "discriminative_param_groups"]
