"""Lock-step rollouts of many single-task envs with one batched policy call per step."""

from __future__ import annotations

from typing import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict


def rollout(
    envs: Sequence[gym.Env],
    act: Callable[[np.ndarray], np.ndarray],
    horizon: int,
    seed: int | None = None,
) -> TensorDict:
    """One episode in every env; returns a ``[n_envs, horizon]`` TensorDict of transitions.

    ``act`` maps a ``[n_envs, obs_dim]`` batch of observations to actions. Envs
    that end early are no longer stepped; their remaining rows are zeros with
    ``valid`` False.
    """
    n = len(envs)
    observation = np.stack(
        [env.reset(seed=None if seed is None else seed + i)[0] for i, env in enumerate(envs)]
    )
    obs_dim, act_dim = observation.shape[-1], envs[0].action_space.shape[0]
    out = {
        "observation": np.zeros((n, horizon, obs_dim), np.float32),
        "action": np.zeros((n, horizon, act_dim), np.float32),
        "reward": np.zeros((n, horizon, 1), np.float32),
        "next_observation": np.zeros((n, horizon, obs_dim), np.float32),
        "terminated": np.zeros((n, horizon, 1), bool),
        "truncated": np.zeros((n, horizon, 1), bool),
        "valid": np.zeros((n, horizon), bool),
    }
    alive = np.ones(n, bool)
    for t in range(horizon):
        action = np.asarray(act(observation), np.float32)
        out["observation"][:, t] = observation
        out["action"][:, t] = action
        for i in np.flatnonzero(alive):
            next_obs, reward, terminated, truncated, _ = envs[i].step(action[i])
            out["reward"][i, t] = reward
            out["next_observation"][i, t] = next_obs
            out["terminated"][i, t] = terminated
            out["truncated"][i, t] = truncated or t == horizon - 1
            out["valid"][i, t] = True
            observation[i] = next_obs
            alive[i] = not (terminated or truncated)
        if not alive.any():
            break
    return to_transitions(out)


def to_transitions(arrays: dict[str, np.ndarray]) -> TensorDict:
    """Numpy rollout arrays to the dataset's TensorDict layout (``next`` nested)."""
    batch = arrays["observation"].shape[:-1]
    td = TensorDict(
        {
            "observation": torch.from_numpy(arrays["observation"]),
            "action": torch.from_numpy(arrays["action"]),
            "reward": torch.from_numpy(arrays["reward"]),
            "terminated": torch.from_numpy(arrays["terminated"]),
            "truncated": torch.from_numpy(arrays["truncated"]),
            "next": {"observation": torch.from_numpy(arrays["next_observation"])},
        },
        batch_size=batch,
    )
    if "valid" in arrays:
        td["valid"] = torch.from_numpy(arrays["valid"])
    return td


def episode_returns(transitions: TensorDict) -> torch.Tensor:
    """Sum of rewards over the valid steps of each episode (last batch dim is time)."""
    reward = transitions["reward"].squeeze(-1)
    return torch.where(transitions["valid"], reward, torch.zeros_like(reward)).sum(-1)
