"""Callbacks the CLI adds: the MLflow config logger and progress a user can read."""

from smac_lightning.callbacks.learning_diagnostics import LearningDiagnostics
from smac_lightning.callbacks.mlflow_config import LogConfigToMLflow
from smac_lightning.callbacks.progress import EvaluationLines, UpdatesBar

__all__ = ["EvaluationLines", "LearningDiagnostics", "LogConfigToMLflow", "UpdatesBar"]
