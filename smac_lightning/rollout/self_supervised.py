"""SMAC's self-supervised iteration: explore, infer, adapt, label with eq. (4), append.

``self_supervised_iteration`` is the whole of it; the module decides when it runs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from tensordict import TensorDict

from smac_lightning.errors import ConfigError
from smac_lightning.nn import RewardDecoder, prior, rows, sample
from smac_lightning.rollout.adaptation import draw_training_z, training_posteriors
from smac_lightning.rollout.contexts import draw_rows
from smac_lightning.rollout.episodes import collect_steps
from smac_lightning.rollout.torchrl_envs import CollectorEnvs
from smac_lightning.rollout.latent_policy import LatentPolicy


@dataclass
class SelfSupervisedConfig:
    """The self-supervised phase, in the authors' units.

    The phase runs ``iterations`` iterations. Each one first collects, reward-free, on
    ``tasks_per_iteration`` training tasks drawn with replacement: ``prior_steps`` with
    z ~ p(z), then ``posterior_steps`` of which each task's first trajectory has z ~ p(z) and
    the others z ~ q(z | ``context_size`` rows of the task's encoder buffer). z is resampled
    every step or once per trajectory as ``model.z.resample`` says, as meta-test draws it. Whole trajectories are collected until a task has the steps; the
    trajectories of a stage run in lock-step. Every trajectory is labelled by the decoder (frozen
    unless ``train_encoder``) with its own z ~ q(z | ``context_size`` offline rows of its task),
    the encoder buffer as it was at the switch (eq. 4). All rows go to the task's RL buffer; the
    prior rows also go to a separate encoder buffer (``data.encoder_buffer: separate``) unless
    ``encoder_buffer`` is ``freeze``. Then ``updates_per_iteration`` gradient updates follow.

    Args:
        iterations: collect-then-train iterations (the authors: 51 on Cheetah, 501 by default).
        updates_per_iteration: gradient updates per iteration (the authors: 4,000 steps x 4 context slices = 16,000).
        tasks_per_iteration: training tasks drawn (with replacement) to collect on per iteration.
        prior_steps: env steps per task with z ~ p(z) (the authors: 400).
        posterior_steps: further env steps per task, the first trajectory with z ~ p(z), the rest with z from the task's encoder buffer (600).
        context_size: rows of a task's buffer a collection posterior is inferred from (labels, posterior trajectories; 256).
        encoder_buffer: ``append`` (the authors' code) or ``freeze`` (the paper's text on Cheetah): whether prior rows join a separate encoder buffer.
        rewards: ``generated`` (SMAC: the frozen decoder's labels) or ``true`` (the Online Oracle: the env's rewards).
        tasks: ``train``, or ``test``: collect on the held-out tasks instead (the paper's appendix B).
        train_encoder: keep training encoder and decoder with eq. (3) in the phase, online rows included (off in all the authors' examples).
        collect: ``False``: the phase's updates without its data (the ``no_online_data`` ablation, not SMAC).
        contexts: the phase's contexts: ``buffer``, the task's whole context buffer (the authors'); ``online``, its online rows once it has some.
    """

    iterations: int = 501
    updates_per_iteration: int = 16_000
    tasks_per_iteration: int = 5
    prior_steps: int = 400
    posterior_steps: int = 600
    context_size: int = 256
    encoder_buffer: Literal["append", "freeze"] = "append"
    rewards: Literal["generated", "true"] = "generated"
    tasks: Literal["train", "test"] = "train"
    train_encoder: bool = False
    collect: bool = True
    contexts: Literal["buffer", "online"] = "buffer"

    def __post_init__(self):
        name = "model.self_supervised"
        if self.iterations < 0:
            raise ConfigError(f"{name}.iterations must be >= 0, got {self.iterations}")
        for key in ("updates_per_iteration", "tasks_per_iteration", "prior_steps", "context_size"):
            if getattr(self, key) < 1:
                raise ConfigError(
                    f"{name}.{key} must be >= 1, got {getattr(self, key)}"
                    + (" (the adapted trajectories are conditioned on the prior ones)" if key == "prior_steps" else "")
                )
        if self.posterior_steps < 0:
            raise ConfigError(f"{name}.posterior_steps must be >= 0, got {self.posterior_steps}")
        if self.contexts not in ("buffer", "online"):
            raise ConfigError(f"{name}.contexts must be 'buffer' or 'online', got {self.contexts!r}")

    @property
    def updates(self) -> int:
        return self.iterations * self.updates_per_iteration


def collection_envs(family, config: SelfSupervisedConfig, processes: int = 1) -> CollectorEnvs:
    """Envs for collection, stepped by a TorchRL collector (over ``processes`` worker processes where
    more than one); reward-free ones never compute the true reward (the Online Oracle's do)."""
    make = functools.partial(family.make_env, reward_free=config.rewards == "generated")
    return CollectorEnvs(make, family.horizon, processes)


@torch.no_grad()
def self_supervised_iteration(smac, dm, envs: CollectorEnvs, generator: torch.Generator, seed: int) -> int:
    """One iteration's data, appended to ``dm``'s buffers; returns the transitions collected.

    ``smac`` gives the frozen ``encoder`` and ``decoder``, the ``policy`` and its settings
    (``self_supervised``, ``z``); every draw of tasks and contexts comes from
    ``generator``, env seeds from ``seed``. Task indices are the replays': training tasks, then
    held-out ones (``tasks: test``).
    """
    config, latent, device = smac.self_supervised, smac.hparams.latent_dim, smac.device
    first, count = (dm.num_train_tasks, len(dm.test_tasks)) if config.tasks == "test" else (0, dm.num_train_tasks)
    tasks = first + torch.randint(count, (config.tasks_per_iteration,), generator=generator)
    every_task = torch.cat([dm.train_tasks, dm.test_tasks]).numpy()
    horizon = dm.family.horizon
    if smac.z.exploration == "training":  # as meta-test explores: training tasks' posteriors
        bank = training_posteriors(smac.encoder, dm, smac.evaluation.offline_context_size, generator)
        explore = lambda n: draw_training_z(bank, n, generator)  # noqa: E731
    else:
        explore = lambda n: prior(n, latent, device)  # noqa: E731

    def trajectories(steps: int, z_for, seed: int) -> list[TensorDict]:
        """Each drawn task's rows from ``ceil(steps / horizon)`` lock-step lanes, labelled (eq. 4)."""
        per_task = math.ceil(steps / horizon)

        def run_round(active: list[int], k: int) -> TensorDict:
            lane_tasks = tasks[active].repeat_interleave(per_task)
            mean, var = z_for(lane_tasks, k, per_task)
            actor = LatentPolicy(smac.policy, mean, var, per_step=smac.z.per_step)
            batch = envs.run(every_task[lane_tasks.numpy()], actor.act, seed + 7919 * k).to(device)
            if config.rewards == "generated":  # each trajectory's own z from its task's offline rows
                offline = context_rows(dm, lane_tasks, config.context_size, generator, offline_only=True)
                batch["reward"] = label_rewards(smac.decoder, batch, sample(*smac.encoder.posterior(offline.to(device))))
            batch["generated"] = torch.full_like(batch["terminated"], config.rewards == "generated")
            batch["task"] = lane_tasks.view(-1, 1, 1).expand(*batch.batch_size, 1).clone()
            return batch.cpu()

        return collect_steps(run_round, len(tasks), steps, per_task)

    def from_prior(lane_tasks: torch.Tensor, k: int, per_task: int):
        return explore(len(lane_tasks))

    def from_buffer(lane_tasks: torch.Tensor, k: int, per_task: int):
        # each task's first posterior trajectory has no context yet: z ~ p(z) (or as exploration
        # draws it); the others infer z from a fresh draw of the task's encoder buffer, exploration rows included
        mean, var = explore(len(lane_tasks))
        inferred = torch.ones(len(lane_tasks), dtype=torch.bool) if k else torch.arange(len(lane_tasks)) % per_task != 0
        if inferred.any():
            context = context_rows(dm, lane_tasks[inferred], config.context_size, generator)
            mean[inferred], var[inferred] = smac.encoder.posterior(context.to(device))
        return mean, var

    explored = trajectories(config.prior_steps, from_prior, seed)
    to_encoder = dm.encoder is not dm.rl and config.encoder_buffer == "append"
    for task, task_rows in zip(tasks.tolist(), explored):
        dm.rl.extend(task, task_rows)
        if to_encoder:
            dm.encoder.extend(task, task_rows)
    collected = sum(task_rows.numel() for task_rows in explored)
    if config.posterior_steps:
        adapted = trajectories(config.posterior_steps, from_buffer, seed + len(tasks) * 1_000)
        for task, task_rows in zip(tasks.tolist(), adapted):
            dm.rl.extend(task, task_rows)
        collected += sum(task_rows.numel() for task_rows in adapted)
    return collected


@torch.no_grad()
def label_rewards(decoder: RewardDecoder, trajectories: TensorDict, z: torch.Tensor) -> torch.Tensor:
    """Eq. (4): r = r_d(s, a, z) for every row of ``[n, T]`` ``trajectories``, with one z per trajectory (``[n, d_z]``)."""
    return decoder(trajectories["observation"], trajectories["action"], rows(z, trajectories.batch_size[1]))


def context_rows(dm, tasks: torch.Tensor, n: int, generator: torch.Generator, offline_only: bool = False) -> TensorDict:
    """``n`` rows per entry of ``tasks`` from its task's encoder buffer (``offline_only``: its offline rows).
    Held-out tasks have no offline rows in the replays: the dataset's held-out encoder rows stand in for them."""
    held_out = tasks >= dm.num_train_tasks
    if not held_out.any():
        return dm.encoder.sample(tasks, n, generator, offline_only)
    if offline_only or not dm.encoder.has_rows()[tasks].all():
        return draw_rows(dm.dataset.test_encoder[tasks - dm.num_train_tasks], n, generator)
    return dm.encoder.sample(tasks, n, generator)
