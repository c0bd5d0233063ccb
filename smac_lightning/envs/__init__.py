"""Task families, registered with gymnasium as ``smac_lightning/<Name>-v0``."""

import gymnasium as gym

from smac_lightning.envs.ant_dir import AntDirEnv, AntDirFamily
from smac_lightning.envs.base import TaskFamily
from smac_lightning.envs.cheetah_vel import CheetahVelEnv, CheetahVelFamily
from smac_lightning.envs.humanoid_dir import HumanoidDirEnv, HumanoidDirFamily
from smac_lightning.envs.point_robot import PointRobotEnv, PointRobotFamily
from smac_lightning.envs.rand_param import HopperParamEnv, HopperParamFamily, WalkerParamEnv, WalkerParamFamily
from smac_lightning.envs.sawyer import SawyerEnv, SawyerFamily

for _name, _entry in {
    "PointRobot-v0": "smac_lightning.envs.point_robot:PointRobotEnv",
    "CheetahVel-v0": "smac_lightning.envs.cheetah_vel:CheetahVelEnv",
    "AntDir-v0": "smac_lightning.envs.ant_dir:AntDirEnv",
    "HumanoidDir-v0": "smac_lightning.envs.humanoid_dir:HumanoidDirEnv",
    "WalkerParam-v0": "smac_lightning.envs.rand_param:WalkerParamEnv",
    "HopperParam-v0": "smac_lightning.envs.rand_param:HopperParamEnv",
    "Sawyer-v0": "smac_lightning.envs.sawyer:SawyerEnv",
}.items():
    if f"smac_lightning/{_name}" not in gym.registry:
        gym.register(f"smac_lightning/{_name}", entry_point=_entry)

# Every family, for code that runs over all of them (benchmarks, spec checks).
ALL_FAMILIES = (
    PointRobotFamily, CheetahVelFamily, AntDirFamily, HumanoidDirFamily, WalkerParamFamily, HopperParamFamily, SawyerFamily,
)

__all__ = [
    "ALL_FAMILIES",
    "TaskFamily",
    "AntDirEnv",
    "AntDirFamily",
    "CheetahVelEnv",
    "CheetahVelFamily",
    "HopperParamEnv",
    "HopperParamFamily",
    "HumanoidDirEnv",
    "HumanoidDirFamily",
    "PointRobotEnv",
    "PointRobotFamily",
    "SawyerEnv",
    "SawyerFamily",
    "WalkerParamEnv",
    "WalkerParamFamily",
]
