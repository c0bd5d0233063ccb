"""Callbacks: the self-supervised phase switch and the MLflow config logger."""

from smac_lightning.callbacks.mlflow_config import LogConfigToMLflow
from smac_lightning.callbacks.phase import SelfSupervisedPhase

__all__ = ["LogConfigToMLflow", "SelfSupervisedPhase"]
