"""PEARL's collection iteration, with ground-truth rewards; the module decides when it runs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smac_lightning.errors import ConfigError
from smac_lightning.nn import sample
from smac_lightning.rollout.episodes import collect_steps
from smac_lightning.rollout.torchrl_envs import CollectorEnvs
from smac_lightning.rollout.latent_policy import LatentPolicy


@dataclass
class PEARLCollection:
    """What PEARL collects, with ground-truth rewards, before each iteration's updates.

    Args:
        initial_steps: per training task, before the first update: z ~ p(z), into both replays.
        tasks_per_iteration: training tasks drawn (without replacement) each iteration.
        prior_steps: per drawn task, z ~ p(z) once per trajectory; they replace the task's
            encoder replay and are added to its RL replay.
        posterior_steps: per drawn task, z ~ q(z | a context from its encoder replay), drawn anew
            per trajectory; RL replay only.

    Steps are rounded up to whole trajectories of the family's horizon.
    """

    initial_steps: int = 2000
    tasks_per_iteration: int = 5
    prior_steps: int = 400
    posterior_steps: int = 600

    def __post_init__(self):
        if self.initial_steps < 1 or self.prior_steps < 1 or self.tasks_per_iteration < 1 or self.posterior_steps < 0:
            raise ConfigError(
                "model.collection needs initial_steps, prior_steps and tasks_per_iteration >= 1 and "
                f"posterior_steps >= 0, got {self}"
            )


@torch.no_grad()
def pearl_iteration(pearl, dm, envs: CollectorEnvs, generator: torch.Generator) -> int:
    """Iteration ``pearl.iterations_collected``'s data, appended to ``dm``'s replays; returns its transitions.

    The first iteration first fills every training task's replays with ``initial_steps`` of
    z ~ p(z). Then ``tasks_per_iteration`` tasks collect, all in lock-step, exploration (z ~ p(z);
    it replaces their encoder replays) and then trajectories with z from their new encoder
    replays (RL replay only). One z per episode; all draws come from ``generator``.
    """
    config, latent, device = pearl.collection, pearl.hparams.latent_dim, pearl.device
    seed = int(torch.randint(2**20, (1,), generator=generator))
    train_tasks = dm.train_tasks.numpy()

    def episodes(tasks: list[int], steps: int, z_for, seed: int):
        def run_round(active: list[int], k: int):
            chosen = [tasks[i] for i in active]
            actor = LatentPolicy(pearl.policy, z_for(chosen).to(device))
            batch = envs.run(train_tasks[chosen], actor.act, seed * 10_007 + k)
            batch["task"] = torch.tensor(chosen).view(-1, 1, 1).expand(*batch.batch_size, 1).clone()
            batch["generated"] = torch.zeros(*batch.batch_size, 1, dtype=torch.bool)  # true rewards
            return batch

        return collect_steps(run_round, len(tasks), steps, lanes_per_entry=1)

    def from_prior(tasks: list[int]) -> torch.Tensor:
        return torch.randn(len(tasks), latent, generator=generator)

    def from_encoder_replay(tasks: list[int]) -> torch.Tensor:
        context = dm.encoder.sample(torch.tensor(tasks), dm.context_size, generator).to(device)
        return sample(*pearl.encoder.posterior(context))

    collected = 0
    if pearl.iterations_collected == 0:
        everyone = list(range(dm.num_train_tasks))
        for task, rows in zip(everyone, episodes(everyone, config.initial_steps, from_prior, seed)):
            dm.rl.extend(task, rows)
            dm.encoder.extend(task, rows)
            collected += rows.numel()
    tasks = torch.randperm(dm.num_train_tasks, generator=generator)[: config.tasks_per_iteration].tolist()
    for task, rows in zip(tasks, episodes(tasks, config.prior_steps, from_prior, seed + 1)):
        dm.encoder.extend(task, rows, replace=True)  # the task's context is its newest exploration only
        dm.rl.extend(task, rows)
        collected += rows.numel()
    for task, rows in zip(tasks, episodes(tasks, config.posterior_steps, from_encoder_replay, seed + 2)):
        dm.rl.extend(task, rows)
        collected += rows.numel()
    return collected
