"""Task families, registered with gymnasium as ``smac_lightning/<Name>-v0``."""

import gymnasium as gym

from smac_lightning.envs.base import TaskFamily
from smac_lightning.envs.point_robot import PointRobotEnv, PointRobotFamily

if "smac_lightning/PointRobot-v0" not in gym.registry:
    gym.register("smac_lightning/PointRobot-v0", entry_point="smac_lightning.envs.point_robot:PointRobotEnv")

__all__ = ["TaskFamily", "PointRobotEnv", "PointRobotFamily"]
