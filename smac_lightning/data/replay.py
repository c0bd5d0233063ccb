"""All tasks' transitions in one contiguous storage, sampled with one index operation."""

from __future__ import annotations

from typing import Callable

import torch
from tensordict import TensorDict


class MultiTaskReplay:
    """A ``[num_tasks, offline + online_capacity]`` TensorDict with per-task fill levels.

    Row ``i`` of task ``t`` lives at ``storage[t, i]``: the offline rows first and
    never overwritten, then a ring of ``online_capacity`` rows for online data.
    Every row carries ``generated`` (its reward came from the reward decoder).
    Task ``t`` is sampled from rows ``[start[t], sizes[t])``: all of them, or only its
    online rows once ``extend(..., replace=True)`` has replaced its history.
    """

    def __init__(self, offline: TensorDict, online_capacity: int = 0):
        num_tasks, self.offline_size = offline.batch_size
        self.online_capacity = online_capacity
        offline = offline.clone()
        offline["generated"] = torch.zeros(num_tasks, self.offline_size, 1, dtype=torch.bool)
        online = offline.apply(
            lambda x: torch.zeros(num_tasks, online_capacity, *x.shape[2:], dtype=x.dtype),
            batch_size=[num_tasks, online_capacity],
        )
        self.storage = torch.cat([offline, online], dim=1)
        self.sizes = torch.full((num_tasks,), self.offline_size, dtype=torch.long)
        self.written = torch.zeros(num_tasks, dtype=torch.long)  # online rows ever written per task
        self.start = torch.zeros(num_tasks, dtype=torch.long)
        self.annotations: dict[str, Callable[[TensorDict], torch.Tensor]] = {}

    def annotate(self, key: str, fact: Callable[[TensorDict], torch.Tensor]) -> None:
        """Give every row ``key`` = ``fact(rows)`` (``[*, rows, 1]``, of whole episodes in order; see
        ``data.episodes``): the offline rows now, the rows ``extend`` adds when they come."""
        self.annotations[key] = fact
        value = fact(self.storage[:, : self.offline_size])
        column = torch.zeros(*self.storage.batch_size, *value.shape[2:], dtype=value.dtype)
        column[:, : self.offline_size] = value
        self.storage[key] = column

    @classmethod
    def empty(cls, num_tasks: int, capacity: int, obs_dim: int, act_dim: int) -> "MultiTaskReplay":
        """A replay with no offline rows (an online learner's), in the dataset's row layout."""
        zeros = lambda *shape, dtype=torch.float32: torch.zeros(num_tasks, 0, *shape, dtype=dtype)  # noqa: E731
        layout = TensorDict(
            {
                "observation": zeros(obs_dim),
                "action": zeros(act_dim),
                "reward": zeros(1),
                "terminated": zeros(1, dtype=torch.bool),
                "truncated": zeros(1, dtype=torch.bool),
                "next": {"observation": zeros(obs_dim)},
                "task": zeros(1, dtype=torch.long),
            },
            batch_size=[num_tasks, 0],
        )
        return cls(layout, capacity)

    def add_tasks(self, n: int) -> None:
        """``n`` more tasks after the existing ones, with no offline rows: only the online rows
        ``extend`` gives them are ever sampled (``has_rows`` says which tasks have some)."""
        rows = self.storage.batch_size[1]
        extra = self.storage.apply(lambda x: torch.zeros(n, *x.shape[1:], dtype=x.dtype), batch_size=[n, rows])
        self.storage = torch.cat([self.storage, extra], dim=0)
        self.sizes = torch.cat([self.sizes, torch.full((n,), self.offline_size, dtype=torch.long)])
        self.start = torch.cat([self.start, torch.full((n,), self.offline_size, dtype=torch.long)])
        self.written = torch.cat([self.written, torch.zeros(n, dtype=torch.long)])

    def has_rows(self) -> torch.Tensor:
        return self.sizes > self.start

    @property
    def num_tasks(self) -> int:
        return self.storage.batch_size[0]

    def sample(self, tasks: torch.Tensor, n: int, generator: torch.Generator | None = None,
               offline_only: bool = False) -> TensorDict:
        """``n`` rows drawn uniformly (with replacement) from each task in ``tasks``: ``[len(tasks), n]``."""
        return self.rows(tasks, self.draw(tasks, n, generator, offline_only))

    def draw(self, tasks: torch.Tensor, n: int, generator: torch.Generator | None = None,
             offline_only: bool = False, online_only: bool = False) -> torch.Tensor:
        """The row numbers ``sample`` would take: ``[len(tasks), n]``. ``online_only`` draws a task's
        online rows alone once it has some (all its rows until then)."""
        if offline_only:
            start, stop = torch.zeros_like(tasks), torch.full_like(tasks, self.offline_size)
        else:
            start, stop = self.start[tasks], self.sizes[tasks]
            if online_only:
                start = torch.where(stop > self.offline_size, torch.clamp(start, min=self.offline_size), start)
        u = torch.rand(len(tasks), n, generator=generator)
        return start.unsqueeze(1) + (u * (stop - start).unsqueeze(1)).long()

    def rows(self, tasks: torch.Tensor, index: torch.Tensor) -> TensorDict:
        """Rows ``index[i]`` of task ``tasks[i]``, in one gather: ``[len(tasks), index.shape[1]]``."""
        return self.storage[tasks.unsqueeze(1), index]

    def extend(self, task: int, rows: TensorDict, replace: bool = False) -> None:
        """Append online rows to one task's ring, overwriting its oldest online rows when full.

        ``replace`` makes ``rows`` the task's whole sampled history from now on (PEARL's
        encoder buffers hold only the latest exploration of each task).
        """
        if self.online_capacity == 0:
            raise ValueError("this replay has no online capacity (data.online_capacity is 0)")
        if self.annotations:  # rows come as whole episodes
            rows = rows.clone(False)
            for key, fact in self.annotations.items():
                rows[key] = fact(rows.unsqueeze(0))[0]
        if replace:
            self.written[task] = 0
            self.start[task] = self.offline_size
        skipped = max(0, rows.batch_size[0] - self.online_capacity)  # more than the ring holds: the newest win
        self.written[task] += skipped
        rows = rows[skipped:]
        k = rows.batch_size[0]
        slots = self.offline_size + (self.written[task] + torch.arange(k)) % self.online_capacity
        self.storage[task, slots] = rows.select(*self.storage.keys(True, True)).to(self.storage.device)
        self.written[task] += k
        self.sizes[task] = self.offline_size + min(int(self.written[task]), self.online_capacity)

    def window(self, which: str, n: int) -> TensorDict:
        """The ``first`` or ``last`` ``n`` online rows each task received, in the order written: ``[tasks, n]``.

        Rows since the task's last ``replace`` count; ``first`` fails once the ring has overwritten them.
        """
        if which not in ("first", "last"):
            raise ValueError(f"window must be 'first' or 'last', got {which!r}")
        written = self.written
        if (written < n).any():
            short = (written < n).nonzero().flatten().tolist()
            raise ValueError(f"tasks {short[:10]} have fewer than {n} online rows (have {written[short[:10]].tolist()})")
        if which == "first" and (written > self.online_capacity).any():
            raise ValueError(
                f"the first {n} rows of some tasks were overwritten: raise the online capacity "
                f"({self.online_capacity}) above the rows written per task ({int(written.max())})"
            )
        first = written - n if which == "last" else torch.zeros_like(written)
        slots = self.offline_size + (first.unsqueeze(1) + torch.arange(n)) % self.online_capacity
        return self.storage[torch.arange(self.num_tasks).unsqueeze(1), slots]

    def online_rows(self) -> TensorDict:
        return self.storage[:, self.offline_size :]

    def state_dict(self) -> dict:
        """The online part only: the offline rows come back from the dataset on disk."""
        return {
            "online": self.online_rows().to_dict(),
            "sizes": self.sizes.clone(),
            "written": self.written.clone(),
            "start": self.start.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        online = TensorDict(state["online"], batch_size=[self.num_tasks, self.online_capacity])
        self.storage[:, self.offline_size :] = online
        self.sizes.copy_(state["sizes"])
        self.written.copy_(state["written"])
        self.start.copy_(state["start"])
