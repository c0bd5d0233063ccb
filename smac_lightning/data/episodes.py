"""Per-row facts about the episode a row belongs to, from the rows' own end flags.

``reward`` and ``episode_end`` are ``[*, rows, 1]``: episodes laid end to end along ``rows``, each
closed by an ``episode_end`` row; rows after the last end are an episode still open.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict


def episode_ends(rows: TensorDict) -> torch.Tensor:
    """The rows that close an episode: terminated or truncated."""
    return rows["terminated"] | rows["truncated"]


def episode_index(episode_end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's episode number and the row number its episode starts at, ``[*, rows]``."""
    end = episode_end.squeeze(-1)
    starts = torch.zeros_like(end)
    starts[..., 1:] = end[..., :-1]
    index = torch.arange(end.shape[-1]).expand_as(end)
    return starts.long().cumsum(-1), torch.where(starts, index, torch.zeros_like(index)).cummax(-1).values


def until_first_success(reward: torch.Tensor, episode_end: torch.Tensor, threshold: float) -> torch.Tensor:
    """True on each row up to and including its episode's first row with ``reward >= threshold``
    (every row of an episode that never gets there)."""
    success = (reward >= threshold).squeeze(-1).long()
    _, first_row = episode_index(episode_end)
    earlier = success.cumsum(-1) - success  # successes before each row, counted from the first row
    return ((earlier - earlier.gather(-1, first_row)) == 0).unsqueeze(-1)


def episode_return(reward: torch.Tensor, episode_end: torch.Tensor, gamma: float) -> torch.Tensor:
    """On every row, its episode's discounted return from the episode's first row."""
    episode, first_row = episode_index(episode_end)
    step = torch.arange(episode.shape[-1]).expand_as(episode) - first_row
    discounted = reward.squeeze(-1).double() * torch.tensor(gamma, dtype=torch.float64).pow(step)
    sums = torch.zeros(*episode.shape[:-1], int(episode.max()) + 1, dtype=torch.float64).scatter_add(-1, episode, discounted)
    return sums.gather(-1, episode).to(reward.dtype).unsqueeze(-1)
