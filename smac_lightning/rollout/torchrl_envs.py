"""Collection through TorchRL: a family's lanes as one TorchRL env (``LanesEnv``, in this process, or
a ``ParallelEnv`` of them over worker processes), stepped by a TorchRL ``Collector``.

``CollectorEnvs`` has ``LockstepEnvs``' interface (``run(tasks, act, seed)`` -> ``[lanes, horizon]``
with ``valid``) and gives the same valid rows: each lane's task and reset seed travel in the reset
TensorDict (``LaneTasks``), so one env serves every task of the family, in-process or not.
"""

from __future__ import annotations

import functools
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import Collector
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import EnvBase, ParallelEnv, TransformedEnv
from torchrl.envs.transforms import Transform

from smac_lightning.rollout.episodes import to_transitions


class LanesEnv(EnvBase):
    """Lanes of one gymnasium task family as one TorchRL env of batch ``[lanes]``, stepped in a loop
    in this process (one TensorDict per step for all lanes, not one per lane). A reset reads each
    lane's ``task`` and ``seed`` from its TensorDict where they are given; a lane whose episode has
    ended rests, not stepped, until the next reset of every lane (it repeats its last observation). The
    agent's world ``position``, where the env's info reports it (Ant, Humanoid), is an observation."""

    def __init__(self, make: Callable[[np.ndarray], gym.Env], tasks: np.ndarray, envs: list[gym.Env] | None = None):
        tasks = np.asarray(tasks)
        super().__init__(batch_size=[len(tasks)])
        envs = list(envs or [])  # built envs to reuse, the first lanes'
        self.envs = envs + [make(task) for task in tasks[len(envs):]]
        n, env = len(tasks), self.envs[0]
        _, info = env.reset(seed=0)
        self.has_position = "position" in info
        observations = {"observation": Unbounded((n, *env.observation_space.shape), dtype=torch.float32)}
        if self.has_position:
            observations["position"] = Unbounded((n, *np.shape(info["position"])), dtype=torch.float32)
        self.observation_spec = Composite(observations, shape=(n,))
        # the task keeps its dtype: a float64 goal rounded to float32 would be another task
        self.state_spec = Composite(task=Unbounded(tasks.shape, dtype=torch.as_tensor(tasks).dtype),
                                    seed=Unbounded((n,), dtype=torch.int64), active=Unbounded((n,), dtype=torch.bool), shape=(n,))
        space = env.action_space
        low, high = (torch.as_tensor(b, dtype=torch.float32).expand(n, *space.shape) for b in (space.low, space.high))
        self.action_spec = Bounded(low, high, (n, *space.shape), dtype=torch.float32)
        self.reward_spec = Unbounded((n, 1), dtype=torch.float32)
        flag = Unbounded((n, 1), dtype=torch.bool)
        self.done_spec = Composite(done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=(n,))
        self._tasks, self._seeds = torch.as_tensor(tasks).clone(), torch.zeros(n, dtype=torch.int64)
        self._observation = np.zeros((n, *env.observation_space.shape), np.float32)
        self._position = np.zeros((n, *np.shape(info["position"])), np.float32) if self.has_position else None
        self._alive = np.zeros(n, bool)

    def _observe(self, terminated: np.ndarray, truncated: np.ndarray, reward: np.ndarray | None = None) -> TensorDict:
        out = TensorDict(
            observation=torch.from_numpy(self._observation.copy()),
            terminated=torch.from_numpy(terminated[:, None]), truncated=torch.from_numpy(truncated[:, None]),
            done=torch.from_numpy((terminated | truncated)[:, None]), batch_size=self.batch_size,
        )
        if self._position is not None:
            out["position"] = torch.from_numpy(self._position.copy())
        if reward is not None:
            out["reward"] = torch.from_numpy(reward[:, None])
        return out

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDict:
        given = tensordict.keys() if tensordict is not None else ()
        if "_reset" in given and "active" not in given:  # the collector's reset of lanes whose episode ended:
            self._alive &= ~tensordict["_reset"].reshape(-1).numpy()  # they rest until the next run
        else:
            self._alive[:] = tensordict["active"].numpy() if "active" in given else True  # a run may use the first lanes only
            if "task" in given:
                self._tasks.copy_(tensordict["task"])
            self._seeds.copy_(tensordict["seed"] if "seed" in given else torch.zeros_like(self._seeds))
            for i in np.flatnonzero(self._alive):
                self.envs[i].set_task(self._tasks[i].numpy())
                self._record(i, *self.envs[i].reset(seed=int(self._seeds[i]) if "seed" in given else None))
        out = self._observe(np.zeros(len(self.envs), bool), np.zeros(len(self.envs), bool))
        # the state a reset reads, as TorchRL expects it back
        return out.update(task=self._tasks.clone(), seed=self._seeds.clone(), active=torch.from_numpy(self._alive.copy()))

    def _step(self, tensordict: TensorDictBase) -> TensorDict:
        action = tensordict["action"].numpy()
        n = len(self.envs)
        reward, terminated, truncated = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)
        for i in np.flatnonzero(self._alive):  # a resting lane is not stepped: its rows are not valid
            observation, reward[i], terminated[i], truncated[i], info = self.envs[i].step(action[i])
            self._record(i, observation, info)
        return self._observe(terminated, truncated, reward)

    def _record(self, lane: int, observation, info: dict) -> None:
        self._observation[lane] = observation
        if self._position is not None:
            self._position[lane] = info["position"]

    def _set_seed(self, seed: int | None) -> None:
        pass  # seeds come per lane with each reset

    def close(self, *, raise_if_closed: bool = True) -> None:
        for env in self.envs:
            env.close()
        super().close(raise_if_closed=raise_if_closed)


class LaneTasks(Transform):
    """Writes each lane's next task, reset seed and whether the run uses it into the TensorDict of the
    run's first reset (of every lane); the collector's resets of single lanes pass as they are. As the
    collector's interruptor it ends the batch once every lane's episode has ended."""

    def __init__(self):
        super().__init__(in_keys=[], out_keys=[])
        self.next: TensorDict | None = None
        self.ended: torch.Tensor | None = None  # per lane: its episode of this run has ended (or it rests)

    def _reset_env_preprocess(self, tensordict: TensorDictBase | None) -> TensorDictBase | None:
        if self.next is None:
            return tensordict
        partial = tensordict is not None and "_reset" in tensordict.keys() and not tensordict["_reset"].all()
        if partial:
            return tensordict
        given, self.next = self.next, None
        self.ended = ~given["active"].reshape(-1)
        return given if tensordict is None else tensordict.update(given)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        if self.ended is not None:
            self.ended |= next_tensordict["done"].reshape(-1)
        return next_tensordict

    def collection_stopped(self) -> bool:
        return self.ended is not None and bool(self.ended.all())


class LanePolicy(TensorDictModuleBase):
    """``observation`` -> ``action`` by the run's ``act`` (numpy in and out, as the runner's), called on
    the run's ``lanes`` first lanes only: a resting lane's action is zeros."""

    in_keys, out_keys = ["observation"], ["action"]

    def __init__(self, act_dim: int):
        super().__init__()
        self.act_dim = act_dim
        self.act: Callable[[np.ndarray], np.ndarray] | None = None
        self.lanes = 0

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        observation = tensordict["observation"]  # [lanes, obs] or [workers, lanes per worker, obs]
        flat = observation.reshape(-1, observation.shape[-1])
        action = torch.zeros(len(flat), self.act_dim)
        action[: self.lanes] = torch.as_tensor(np.asarray(self.act(flat[: self.lanes].numpy()), np.float32))
        tensordict["action"] = action.reshape(*observation.shape[:-1], self.act_dim)
        return tensordict


class CollectorEnvs:
    """``LockstepEnvs``' interface on a TorchRL ``Collector``. Its env holds as many lanes as the
    largest run so far (a run of fewer uses the first ones; the rest rest), rebuilt, keeping the built
    gymnasium envs, when a run needs more. ``processes`` > 1: a ``ParallelEnv`` of that many worker
    processes, each stepping an equal share of the lanes; else one ``LanesEnv`` in this process."""

    def __init__(self, make: Callable[[np.ndarray], gym.Env], horizon: int, processes: int = 1):
        self.make, self.horizon, self.processes = make, horizon, max(processes, 1)
        self._collector: Collector | None = None
        self._lane_tasks: LaneTasks | None = None
        self._policy: LanePolicy | None = None
        self._capacity = 0

    def _build(self, tasks: np.ndarray) -> None:
        envs = []
        if self._collector is not None:
            base = self._collector.env.base_env
            if isinstance(base, LanesEnv):  # its gymnasium envs go on in the new one
                envs, base.is_closed = base.envs, True
            self._collector.shutdown(close_env=not envs)
        workers = self.processes
        capacity = -(-len(tasks) // workers) * workers
        lanes = np.concatenate([tasks, np.repeat(tasks[-1:], capacity - len(tasks), axis=0)])
        if workers > 1:  # the batch is [workers, lanes per worker]
            chunks = np.split(lanes, workers)
            # daemonic: a run that ends without closing them (a crash) does not wait on them at exit
            env = ParallelEnv(workers, [functools.partial(LanesEnv, self.make, chunk) for chunk in chunks], num_threads=1,
                              daemon=True)
        else:
            env = LanesEnv(self.make, lanes, envs)
        self._policy = LanePolicy(env.action_spec.shape[-1])
        self._lane_tasks = LaneTasks()
        self._collector = Collector(TransformedEnv(env, self._lane_tasks), self._policy, frames_per_batch=capacity * self.horizon,
                                    total_frames=-1, reset_at_each_iter=True, trust_policy=True, use_buffers=False,
                                    interruptor=self._lane_tasks, auto_register_policy_transforms=False)
        if not hasattr(self._collector, "_final_rollout"):  # TorchRL 0.14 reads it when interrupted, buffers or not
            self._collector._final_rollout = None
        self._capacity = capacity

    def run(self, tasks: np.ndarray, act: Callable[[np.ndarray], np.ndarray], seed: int | None = None) -> TensorDict:
        """One episode per entry of ``tasks``, lane ``i`` reset with ``seed + i``; rows after a lane's
        episode ends are zeros with ``valid`` False."""
        tasks, n = np.asarray(tasks), len(tasks)
        if n > self._capacity:
            self._build(tasks)
        shape = self._collector.env.batch_size  # [lanes], or [workers, lanes per worker]
        lanes = np.concatenate([tasks, np.repeat(tasks[-1:], self._capacity - n, axis=0)])
        given = TensorDict(task=torch.as_tensor(lanes), active=torch.arange(self._capacity) < n, batch_size=[self._capacity])
        if seed is not None:
            given["seed"] = seed + torch.arange(self._capacity)
        self._lane_tasks.next = given.reshape(shape)
        self._policy.act, self._policy.lanes = act, n
        batch = self._collector.next().reshape(self._capacity, -1)[:n]  # shorter where every episode ended early
        return _as_episodes(batch, self.horizon)

    def close(self) -> None:
        if self._collector is not None:
            self._collector.shutdown()
            self._collector, self._capacity = None, 0

    @property
    def closed(self) -> bool:
        """Holds no envs: closed, or no run yet."""
        return self._collector is None


def _as_episodes(batch: TensorDictBase, horizon: int) -> TensorDict:
    """The collector's ``[lanes, steps]`` as the runner's ``[lanes, horizon]``: each lane's rows up to the
    end of its first episode valid, the rest zeros."""
    done = batch["next", "done"].squeeze(-1)
    valid = torch.cumsum(done.long(), dim=-1) - done.long() == 0  # no episode ended before the step
    steps = valid.shape[-1]
    arrays = {
        "observation": batch["observation"], "action": batch["action"], "reward": batch["next", "reward"],
        "next_observation": batch["next", "observation"], "terminated": batch["next", "terminated"],
        "truncated": batch["next", "truncated"] | (torch.arange(steps) == horizon - 1).view(1, -1, 1),
    }
    if "position" in batch.keys():
        arrays["position"], arrays["next_position"] = batch["position"], batch["next", "position"]
    out = {}
    for key, value in arrays.items():
        kept = torch.where(valid.view(*valid.shape, *[1] * (value.dim() - 2)), value, torch.zeros_like(value))
        out[key] = torch.nn.functional.pad(kept, (0, 0, 0, horizon - steps)).numpy()
    out["valid"] = torch.nn.functional.pad(valid, (0, horizon - steps)).numpy()
    return to_transitions(out)
