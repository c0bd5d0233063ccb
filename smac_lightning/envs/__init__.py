"""Task families, registered with gymnasium as ``smac_lightning/<Name>-v0`` when ``smac_lightning``
is imported. Sawyer's names load on first use: importing PyBullet prints its build time.
"""

import warnings

import gymnasium as gym
import mujoco

from smac_lightning.envs.ant_dir import AntDirEnv, AntDirFamily
from smac_lightning.envs.base import TaskFamily
from smac_lightning.envs.cheetah_vel import CheetahVelEnv, CheetahVelFamily
from smac_lightning.envs.humanoid_dir import HumanoidDirEnv, HumanoidDirFamily
from smac_lightning.envs.point_robot import PointRobotEnv, PointRobotFamily
from smac_lightning.envs.rand_param import HopperParamEnv, HopperParamFamily, WalkerParamEnv, WalkerParamFamily

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



def _mujoco_warning(message: str) -> None:
    warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


# MuJoCo's own handler appends every warning to MUJOCO_LOG.TXT in the working folder (gymnasium's
# half_cheetah.xml alone gives one per env built); Python's warnings show each message once instead.
if mujoco.get_mju_user_warning() is None:
    mujoco.set_mju_user_warning(_mujoco_warning)


def __getattr__(name: str):
    if name in ("SawyerEnv", "SawyerFamily"):
        from smac_lightning.envs import sawyer

        return getattr(sawyer, name)
    if name == "ALL_FAMILIES":  # every family, for code that runs over all of them (benchmarks, spec checks)
        return (
            PointRobotFamily, CheetahVelFamily, AntDirFamily, HumanoidDirFamily, WalkerParamFamily, HopperParamFamily,
            __getattr__("SawyerFamily"),
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
