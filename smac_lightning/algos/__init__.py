"""LightningModules that compose the networks and losses."""

from smac_lightning.algos.actor import ActorConfig
from smac_lightning.algos.pearl import PEARL
from smac_lightning.algos.smac import SMAC, Phase
from smac_lightning.rollout import PEARLCollection, SelfSupervisedConfig

__all__ = ["ActorConfig", "PEARL", "PEARLCollection", "SMAC", "Phase", "SelfSupervisedConfig"]
