"""LightningModules that compose the networks and losses."""

from smac_lightning.algos.pearl import PEARL, PEARLCollection
from smac_lightning.algos.smac import SMAC, Phase, SelfSupervisedConfig

__all__ = ["PEARL", "PEARLCollection", "SMAC", "Phase", "SelfSupervisedConfig"]
