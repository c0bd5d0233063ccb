"""The one runner: whole episodes of many single-task envs in lock-step, one policy call per step."""

from __future__ import annotations

from typing import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict


class LockstepEnvs:
    """A pool of one family's envs, one per lane, each switched to the task it runs next.

    ``make`` builds an env for a task (``family.make_env``, reward-free or not, or
    ``family.make_data_env``); envs are built on first need and reused with ``set_task``.
    """

    def __init__(self, make: Callable[[np.ndarray], gym.Env], horizon: int):
        self.make = make
        self.horizon = horizon
        self._envs: list[gym.Env] = []

    def envs(self, tasks: np.ndarray) -> list[gym.Env]:
        while len(self._envs) < len(tasks):
            self._envs.append(self.make(tasks[len(self._envs)]))
        for env, task in zip(self._envs, tasks):
            env.set_task(task)
        return self._envs[: len(tasks)]

    def run(self, tasks: np.ndarray, act: Callable[[np.ndarray], np.ndarray], seed: int | None = None) -> TensorDict:
        """One episode per entry of ``tasks`` (``[n, task_dim]``): see ``run_episodes``."""
        return run_episodes(self.envs(tasks), act, self.horizon, seed)

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs.clear()


def run_episodes(
    envs: Sequence[gym.Env],
    act: Callable[[np.ndarray], np.ndarray],
    horizon: int,
    seed: int | None = None,
) -> TensorDict:
    """One episode in every env (env ``i`` reset with ``seed + i``); a ``[n_envs, horizon]`` TensorDict.

    ``act`` maps a ``[n_envs, obs_dim]`` batch of observations to actions. An env whose
    episode ends early is no longer stepped: its remaining rows are zeros with ``valid`` False.
    """
    n = len(envs)
    observation, info = zip(*(env.reset(seed=None if seed is None else seed + i) for i, env in enumerate(envs)))
    observation = np.stack(observation)
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
    # where an env reports the agent's world x-y that its observation leaves out (Ant), it is kept for pictures
    position = np.stack([i["position"] for i in info]) if "position" in info[0] else None
    if position is not None:
        out["position"] = np.zeros((n, horizon, position.shape[-1]), np.float32)
        out["next_position"] = np.zeros_like(out["position"])
    alive = np.ones(n, bool)
    for t in range(horizon):
        action = np.asarray(act(observation), np.float32)
        out["observation"][:, t] = observation
        out["action"][:, t] = action
        if position is not None:
            out["position"][:, t] = position
        for i in np.flatnonzero(alive):
            next_obs, reward, terminated, truncated, step_info = envs[i].step(action[i])
            if position is not None:
                position[i] = out["next_position"][i, t] = step_info["position"]
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
    if "position" in arrays:
        td["position"] = torch.from_numpy(arrays["position"])
        td["next", "position"] = torch.from_numpy(arrays["next_position"])
    return td


def episode_returns(transitions: TensorDict) -> torch.Tensor:
    """Sum of rewards over the valid steps of each episode (last batch dim is time)."""
    reward = transitions["reward"].squeeze(-1)
    return torch.where(transitions["valid"], reward, torch.zeros_like(reward)).sum(-1)


def action_saturation(transitions: TensorDict, threshold: float = 0.95) -> float:
    """Fraction of action components at the edge of the action box (|a| > ``threshold``) over the valid
    steps: near 1, the policy is bang-bang, as when its actor follows a critic's action gradient to
    the corners."""
    edge = (transitions["action"].abs() > threshold).float().mean(-1)
    valid = transitions["valid"]
    return (edge * valid).sum().item() / max(int(valid.sum()), 1)


def collect_steps(
    run_round: Callable[[list[int], int], TensorDict], entries: int, steps: int, lanes_per_entry: int
) -> list[TensorDict]:
    """Whole episodes until each of ``entries`` has at least ``steps`` valid rows; its rows, in time order.

    ``run_round(active, k)`` runs round ``k``: ``lanes_per_entry`` consecutive lanes per active
    entry, in lock-step, and returns their ``[len(active) * lanes_per_entry, horizon]`` episodes
    with ``valid``. Only episodes that end early make a second round.
    """
    if steps <= 0:
        return []
    rows: list[list[TensorDict]] = [[] for _ in range(entries)]
    remaining = [steps] * entries
    for k in range(steps + 1):
        active = [e for e in range(entries) if remaining[e] > 0]
        if not active:
            break
        batch = run_round(active, k)
        for i, entry in enumerate(active):
            for lane in range(i * lanes_per_entry, (i + 1) * lanes_per_entry):
                valid = batch[lane][batch["valid"][lane]].exclude("valid")
                rows[entry].append(valid)
                remaining[entry] -= valid.batch_size[0]
    return [torch.cat(parts) for parts in rows]
