"""Meta-test adaptation, the paper's protocol, on many tasks at once.

For every task (``runs_per_task`` times): ``num_exploration`` trajectories with
z ~ p(z), then the posterior from everything they collected (true rewards), then
one post-adaptation trajectory with z from that posterior. z is drawn afresh at
every step (the authors' protocol) or once per trajectory; the posterior itself is
never updated inside an episode. The reported number is the post-adaptation
return. The same policy is also run with z from an offline history of the task:
the gap between the two is the z-space shift of the paper's section 4.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from tensordict import TensorDict

from smac_lightning.envs.base import TaskFamily
from smac_lightning.errors import ConfigError
from smac_lightning.losses import kl_to_standard_normal
from smac_lightning.nn import prior, rows
from smac_lightning.rollout.episodes import action_saturation, episode_returns
from smac_lightning.rollout.latent_policy import LatentPolicy, ZSampling
from smac_lightning.rollout.torchrl_envs import CollectorEnvs


# Success from the agent's own exploration and from an offline history (sparse-reward families), and
# how often the exploration trajectories themselves reached success (what the posterior can learn of a
# sparse reward); each also reported per task group as ``<name>/<group>``.
SUCCESS_METRICS = ("final_success", "final_success_offline_context", "exploration_success")


@dataclass
class MetaTestProtocol:
    """How meta-test evaluation runs.

    Args:
        num_exploration: exploration trajectories (z ~ prior) before adapting.
        runs_per_task: independent meta-episodes per task, averaged.
        max_train_tasks: training tasks evaluated (one fixed random choice of them, the same at every evaluation); 0 skips them.
        deterministic: act with tanh of the policy mean.
        offline_context_size: offline rows behind ``kl_offline_paper`` and ``z.exploration: training`` (the authors: 256).
    """

    num_exploration: int = 2
    runs_per_task: int = 4
    max_train_tasks: int = 10
    deterministic: bool = True
    offline_context_size: int = 256


@torch.no_grad()
def training_posteriors(encoder, dm, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each training task's posterior (mean, var ``[tasks, d_z]``) from ``n`` of its offline rows in
    ``dm``'s context buffer: where ``z.exploration: training`` draws from."""
    if getattr(dm.encoder, "offline_size", 0) == 0:
        raise ConfigError("model.z.exploration: training explores from the training tasks' offline rows, and this data has none")
    rows = dm.encoder.sample(torch.arange(dm.num_train_tasks), n, generator, offline_only=True)
    return encoder.posterior(rows.to(next(encoder.parameters()).device))


def draw_training_z(bank: tuple[torch.Tensor, torch.Tensor], n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows of (mean, var), each a random training task's posterior from ``bank`` (``[tasks, d_z]`` each)."""
    picks = torch.randint(len(bank[0]), (n,), generator=generator).to(bank[0].device)
    return bank[0][picks], bank[1][picks]


def exploration_draws(bank: tuple[torch.Tensor, torch.Tensor] | None, lanes: int, trajectories: int,
                      generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """``MetaTester.run``'s ``exploring``: per exploration trajectory, each lane a random training task's
    posterior from ``bank``; None (p(z)) without a bank."""
    return None if bank is None else [draw_training_z(bank, lanes, generator) for _ in range(trajectories)]


def reward_error(decoder, history: TensorDict, z: torch.Tensor) -> float:
    """Mean squared error of the decoder's rewards for ``history`` ``[n, k]`` given one z per row."""
    z_rows = rows(z, history.batch_size[1])
    error = (decoder(history["observation"], history["action"], z_rows) - history["reward"]).pow(2).squeeze(-1)
    valid = history.get("valid", torch.ones_like(error, dtype=torch.bool))
    return (error * valid).sum().item() / valid.sum().item()


class MetaTester:
    """Runs the protocol for a set of tasks; the ``kept_task_sets`` most recently used task sets keep
    their lanes (no scene rebuilds for the fixed held-out set), older ones are closed: the training
    tasks are drawn afresh at every evaluation, and on PyBullet a set's 40 lanes hold about a GB."""

    def __init__(self, family: TaskFamily, protocol: MetaTestProtocol, z: ZSampling = ZSampling(), kept_task_sets: int = 2,
                 processes: int = 1):
        self.family, self.processes = family, processes
        self.protocol, self.z = protocol, z
        self.kept_task_sets = kept_task_sets
        self._lanes: OrderedDict[bytes, LockstepEnvs] = OrderedDict()
        self.episodes: dict = {}  # the last run's adapted trajectories, for pictures

    def close(self) -> None:
        """Closes every kept task set's envs (and worker processes)."""
        while self._lanes:
            self._lanes.popitem()[1].close()

    def metric_names(self, offline_context: bool = True, decoder: bool = True, posterior: bool = True) -> list[str]:
        """What ``run`` returns, given an offline context or not, a decoder or not, and a posterior
        (its KLs) or the true task in z's place."""
        names = [f"return_by_trajectory_{k}" for k in range(self.protocol.num_exploration + 1)]
        names += ["final_return", "action_saturation"] + ["kl_online_paper", "kl_online_matched"] * posterior
        names += ["reward_error_online"] * decoder + self._success_names(SUCCESS_METRICS[0]) + self._success_names(SUCCESS_METRICS[2])
        if offline_context:
            names += ["final_return_offline_context"] + ["kl_offline_paper", "kl_offline_matched"] * posterior
            names += ["reward_error_offline", "label_error_online"] * decoder + self._success_names(SUCCESS_METRICS[1])
        return names

    def _success_names(self, name: str) -> list[str]:
        if not self._counts_success:
            return []
        return [name] + [f"{name}/{group}" for group in self.family.task_group_names]

    def task_counts(self, tasks: np.ndarray) -> dict[str, int]:
        """How many of ``tasks`` each per-group metric averages over (the others: all of them)."""
        groups = self.family.task_groups(tasks)
        return {f"{name}/{group}": int(mask.sum()) for name in SUCCESS_METRICS for group, mask in groups.items()}

    @property
    def _counts_success(self) -> bool:
        return self.family.success_reward is not None

    def _success(self, episodes: TensorDict, tasks: np.ndarray, name: str) -> dict[str, float]:
        """``name``: the fraction of episodes that reach the family's success reward at some valid step;
        ``name/<group>`` the same over each group's tasks that ``tasks`` has."""
        reward = episodes["reward"].squeeze(-1)
        hit = ((reward >= self.family.success_reward) & episodes["valid"]).any(-1).float().cpu()
        out = {name: hit.mean().item()}
        for group, mask in self.family.task_groups(tasks).items():
            if mask.any():
                out[f"{name}/{group}"] = hit.view(len(tasks), -1)[torch.as_tensor(mask)].mean().item()
        return out

    def _episode(self, tasks: np.ndarray, policy, mean: torch.Tensor, var: torch.Tensor, seed: int) -> TensorDict:
        """One episode per run of each task with z ~ N(mean, var) (one row per run), drawn per step or once."""
        key = tasks.tobytes()
        if key in self._lanes:
            self._lanes.move_to_end(key)
        else:
            while len(self._lanes) >= self.kept_task_sets:
                self._lanes.popitem(last=False)[1].close()
            self._lanes[key] = CollectorEnvs(self.family.make_env, self.family.horizon, self.processes)
        lanes = np.repeat(tasks, self.protocol.runs_per_task, axis=0)
        actor = LatentPolicy(policy, mean, var, self.z.per_step, self.protocol.deterministic)
        return self._lanes[key].run(lanes, actor.act, seed).to(mean.device)

    @torch.no_grad()
    def run(self, encoder, policy, tasks: np.ndarray, offline_context: TensorDict | None, seed: int = 0,
            decoder=None, offline_context_paper: TensorDict | None = None, true_task_as_z: bool = False,
            exploring: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict:
        """Metrics (floats) for ``tasks``; ``offline_context`` is ``[len(tasks), n]`` offline transitions,
        the same count as the exploration collects, and ``offline_context_paper`` the authors' 256.

        The z-shift diagnostics come in two definitions: ``kl_*_paper`` as the paper's Fig. 2 (online:
        the whole meta-test history, adapted trajectory included; offline: 256 rows) and
        ``kl_*_matched`` from equal counts (the exploration trajectories against as many offline
        rows): a product of Gaussians sharpens with its number of factors, so only the second
        compares like with like. With ``decoder``, also how well each history's posterior mean
        explains that history's true rewards (``reward_error_*``). ``true_task_as_z`` puts each
        task's description in z's place everywhere (the diagnostic upper bound). ``label_error_online``
        is eq. 4 as training applies it, measured: the decoder's rewards for the exploration history with
        z from the offline rows, against the true rewards (computed here only, never fed to training).
        ``exploring`` replaces p(z) in the exploration trajectories with one ``(mean, var)`` per
        exploration trajectory and meta-episode (``[num_exploration, len(tasks) * runs_per_task, d_z]``):
        a probe of what other exploration would tell the posterior, not the paper's protocol.
        """
        runs = self.protocol.runs_per_task
        n = len(tasks) * runs
        device = next(policy.parameters()).device
        if true_task_as_z:
            described = torch.as_tensor(tasks, dtype=torch.float32, device=device).repeat_interleave(runs, 0)
            posterior = lambda context: (described, torch.zeros_like(described))  # noqa: E731
            exploring = [(described, torch.zeros_like(described))] * self.protocol.num_exploration
        else:
            posterior = encoder.posterior
        history, returns = [], []
        for k in range(self.protocol.num_exploration):
            z_k = exploring[k] if exploring is not None else prior(n, encoder.latent_dim, device)
            history.append(self._episode(tasks, policy, *z_k, seed + 1000 * k))
            returns.append(episode_returns(history[-1]))
        history = torch.cat(history, dim=1)
        mean, var = posterior(history)
        adapted = self._episode(tasks, policy, mean, var, seed + 1000 * self.protocol.num_exploration)
        self.episodes = {"tasks": np.repeat(tasks, runs, axis=0), "runs": runs, "online": adapted.cpu(), "exploration": history.cpu()}
        returns.append(episode_returns(adapted))
        metrics = {f"return_by_trajectory_{k}": r.mean().item() for k, r in enumerate(returns)}
        metrics["final_return"] = returns[-1].mean().item()
        metrics["action_saturation"] = action_saturation(adapted)
        if not true_task_as_z:  # a point mass in z's place has no KL to the prior worth logging
            metrics["kl_online_matched"] = kl_to_standard_normal(mean, var).mean().item()
            metrics["kl_online_paper"] = kl_to_standard_normal(*posterior(torch.cat([history, adapted], dim=1))).mean().item()
        if self._counts_success:
            metrics.update(self._success(adapted, tasks, SUCCESS_METRICS[0]))
            metrics.update(self._success(history, tasks, SUCCESS_METRICS[2]))  # at some step of either trajectory
        if decoder is not None:
            metrics["reward_error_online"] = reward_error(decoder, history, mean)
        if offline_context is not None:
            context = offline_context.to(device).repeat_interleave(runs, dim=0)
            mean, var = posterior(context)
            offline = self._episode(tasks, policy, mean, var, seed + 7919)
            self.episodes["offline"] = offline.cpu()
            metrics["final_return_offline_context"] = episode_returns(offline).mean().item()
            paper = offline_context if offline_context_paper is None else offline_context_paper
            mean_paper, var_paper = posterior(paper.to(device))
            if not true_task_as_z:
                metrics["kl_offline_matched"] = kl_to_standard_normal(mean, var).mean().item()
                metrics["kl_offline_paper"] = kl_to_standard_normal(mean_paper, var_paper).mean().item()
            if decoder is not None:  # eq. 4's labels of the agent's own data, against the true rewards
                metrics["label_error_online"] = reward_error(decoder, history, mean_paper.repeat_interleave(runs, 0))
            if self._counts_success:
                metrics.update(self._success(offline, tasks, SUCCESS_METRICS[1]))
            if decoder is not None:
                metrics["reward_error_offline"] = reward_error(decoder, context, mean)
        return metrics
