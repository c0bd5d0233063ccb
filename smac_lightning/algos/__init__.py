"""LightningModules that compose the networks and losses."""

from smac_lightning.algos.smac import SMAC, Phase, SelfSupervisedConfig

__all__ = ["SMAC", "Phase", "SelfSupervisedConfig"]
