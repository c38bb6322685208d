"""Training DeepWarp: run configs, the paper's losses and batch sampling, the trainer."""
from .config import DataConfig, LossConfig, OptimConfig, RunConfig, TrainConfig, load_config, save_config
from .losses import normalized_error, registration_tolerant_l2, training_loss
from .sampler import PaperSampler
from .trainer import Trainer, learning_rate

__all__ = [
    "DataConfig", "LossConfig", "OptimConfig", "RunConfig", "TrainConfig", "load_config", "save_config",
    "normalized_error", "registration_tolerant_l2", "training_loss", "PaperSampler", "Trainer", "learning_rate",
]
