"""Contexts: rows of a task's buffer that a posterior is inferred from."""

from __future__ import annotations

import torch
from tensordict import TensorDict


def draw_rows(buffer: TensorDict, n: int, generator: torch.Generator) -> TensorDict:
    """``n`` rows drawn uniformly with replacement from each task's row of ``buffer`` ``[tasks, rows]``."""
    tasks, available = buffer.batch_size
    return buffer[torch.arange(tasks)[:, None], (torch.rand(tasks, n, generator=generator) * available).long()]
