"""Everything that steps environments: the lock-step runner, the z-conditioned policy adapter,
meta-test adaptation, SMAC's self-supervised iteration and PEARL's collection.

Above ``envs``, ``nn`` and ``losses``; below ``data`` (whose scripted generation runs here) and
``algos`` (which decide when an iteration runs). Replays and datamodules come in as arguments.
"""

from smac_lightning.rollout.adaptation import MetaTester, MetaTestProtocol, draw_training_z, exploration_draws, reward_error, training_posteriors
from smac_lightning.rollout.contexts import draw_rows
from smac_lightning.rollout.episodes import LockstepEnvs, collect_steps, episode_returns, run_episodes, to_transitions
from smac_lightning.rollout.latent_policy import LatentPolicy, ZSampling
from smac_lightning.rollout.pearl_collection import PEARLCollection, pearl_iteration
from smac_lightning.rollout.torchrl_envs import CollectorEnvs, LanesEnv
from smac_lightning.rollout.self_supervised import (
    SelfSupervisedConfig,
    collection_envs,
    context_rows,
    label_rewards,
    self_supervised_iteration,
)

__all__ = [
    "CollectorEnvs", "LanesEnv", "LatentPolicy", "LockstepEnvs", "MetaTestProtocol", "MetaTester", "PEARLCollection", "SelfSupervisedConfig",
    "collect_steps", "collection_envs", "context_rows", "draw_rows", "draw_training_z", "episode_returns", "label_rewards",
    "pearl_iteration", "reward_error", "run_episodes", "self_supervised_iteration", "to_transitions", "training_posteriors", "ZSampling",
]
