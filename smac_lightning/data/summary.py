"""What is in a dataset: sizes, where it came from, and how good its trajectories are."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from smac_lightning.data.dataset import BUFFERS, OfflineDataset


def complete_episode_returns(buffer: TensorDict) -> torch.Tensor:
    """Returns of the whole episodes in a ``[tasks, rows]`` buffer whose rows are in time order.

    An episode ends at a ``terminated`` or ``truncated`` row; rows after a task's last end
    (an episode cut by the buffer's size) are not counted. A buffer cut from the end of a
    replay (a ``last`` window) may begin mid-episode: its first "episode" is then a tail.
    """
    reward = buffer["reward"].squeeze(-1).double()
    ends = (buffer["terminated"] | buffer["truncated"]).squeeze(-1)
    running = reward.cumsum(-1)[ends]  # cumulative reward at each episode's last row, task by task
    tasks = ends.nonzero()[:, 0]
    first_of_task = torch.ones_like(tasks, dtype=torch.bool)
    first_of_task[1:] = tasks[1:] != tasks[:-1]
    previous = torch.cat([running.new_zeros(1), running[:-1]])
    return torch.where(first_of_task, running, running - previous)


def summarize(dataset: OfflineDataset) -> str:
    manifest = dataset.manifest
    lines = [
        f"family: {manifest['family']}",
        f"tasks: {len(manifest['tasks']['train'])} train, {len(manifest['tasks']['test'])} test",
        f"behaviour policy: {manifest.get('behaviour_policy')}",
        f"sizes per task: {manifest['sizes']}",
    ]
    if "success_rate" in manifest:
        lines.append(f"scripted trajectories achieving the rewarded behaviour: {manifest['success_rate']}")
    for name, buffer in zip(BUFFERS, (dataset.train_rl, dataset.train_encoder, dataset.test_encoder)):
        returns = complete_episode_returns(buffer)
        if len(returns):
            lines.append(
                f"{name}: {len(returns)} complete episodes, return mean {returns.mean():.2f} "
                f"(min {returns.min():.2f}, max {returns.max():.2f})"
            )
        else:
            lines.append(f"{name}: no complete episode")
    return "\n".join(lines)
