"""Callbacks: the MLflow config logger."""

from smac_lightning.callbacks.mlflow_config import LogConfigToMLflow

__all__ = ["LogConfigToMLflow"]
