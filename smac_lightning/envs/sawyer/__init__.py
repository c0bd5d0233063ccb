"""Sawyer Manipulation in PyBullet: scenes, the env, its scripted data controller and the family."""

from smac_lightning.envs.sawyer.env import SawyerEnv
from smac_lightning.envs.sawyer.family import SawyerFamily
from smac_lightning.envs.sawyer.scripted import ScriptedSawyer

__all__ = ["SawyerEnv", "SawyerFamily", "ScriptedSawyer"]
