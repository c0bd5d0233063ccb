"""Callbacks: the MLflow config logger and progress a user can read (the CLI adds them), SMAC's phase
(its module adds it), the learning diagnostics (attached by hand)."""

from smac_lightning.callbacks.learning_diagnostics import LearningDiagnostics
from smac_lightning.callbacks.mlflow_config import LogConfigToMLflow
from smac_lightning.callbacks.progress import EvaluationLines, UpdatesBar
from smac_lightning.callbacks.self_supervised_phase import Phase, SelfSupervisedPhase

__all__ = ["EvaluationLines", "LearningDiagnostics", "LogConfigToMLflow", "Phase", "SelfSupervisedPhase", "UpdatesBar"]
