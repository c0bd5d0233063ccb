"""The switch to self-supervised online meta-training, and the collection that feeds it."""

from __future__ import annotations

import math

import lightning as L
import torch
from tensordict import TensorDict

from smac_lightning.algos.smac import SMAC, Phase
from smac_lightning.collect import ExplorationCollector, label_rewards
from smac_lightning.evaluation import draw_rows, prior, sample


def freeze(*modules: torch.nn.Module) -> None:
    for module in modules:
        module.requires_grad_(False)
        module.eval()


class SelfSupervisedPhase(L.Callback):
    """At ``offline_updates``: freeze encoder and decoder, then run the self-supervised iterations.

    Iteration ``i`` begins when the phase has done ``i * updates_per_iteration`` updates: it
    collects reward-free data (``SMAC``'s ``SelfSupervisedConfig`` says what), labels it with the
    frozen decoder and appends it to the buffers with ``generated=True``; the updates that follow
    sample it. On resume in this phase the freeze is re-applied and the iterations carry on from
    the restored counters and buffers.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._collector: ExplorationCollector | None = None
        self._generator = torch.Generator()

    def on_train_start(self, trainer: L.Trainer, module: SMAC) -> None:
        if module.phase == Phase.SELF_SUPERVISED:
            freeze(module.encoder, module.decoder)

    def on_train_batch_start(self, trainer: L.Trainer, module: SMAC, batch, batch_idx: int) -> None:
        if module.phase == Phase.OFFLINE and module.updates >= module.hparams.offline_updates:
            self.switch(trainer.datamodule, module)
        if module.phase != Phase.SELF_SUPERVISED or module.updates >= module.total_updates:
            return
        updates_in_phase = module.updates - module.hparams.offline_updates
        if updates_in_phase >= module.iterations_done * module.self_supervised.updates_per_iteration:
            self.collect(trainer, module)
            module.iterations_done += 1
            module.log("train/online_transitions", float(module.online_transitions))

    @staticmethod
    def switch(dm, module: SMAC) -> None:
        """Into the self-supervised phase: encoder and decoder frozen; held-out tasks get replay rows if collected on."""
        freeze(module.encoder, module.decoder)
        module.phase = Phase.SELF_SUPERVISED
        if module.self_supervised.tasks == "test":
            dm.add_held_out_tasks()

    @torch.no_grad()
    def collect(self, trainer: L.Trainer, module: SMAC) -> None:
        """One iteration's data: ``tasks_per_iteration`` tasks drawn with replacement, their prior
        trajectories, then their posterior trajectories, every trajectory labelled (eq. 4).

        Task indices are the replays': training tasks, then held-out ones (``tasks: test``)."""
        dm, config = trainer.datamodule, module.self_supervised
        if self._collector is None:
            every_task = torch.cat([dm.train_tasks, dm.test_tasks]).numpy()
            with torch.random.fork_rng():  # building it must not shift the global stream (exact resume)
                self._collector = ExplorationCollector(
                    dm.family, every_task, module.policy, module.hparams.latent_dim,
                    per_step=module.evaluation.resample_z == "step", reward_free=config.rewards == "generated",
                )
        # Seeded by counters, not carried along, so a resumed run draws the same iterations.
        seed = (self.seed * 7919 + trainer.global_rank) * 1_000_003 + module.iterations_done * 10_007
        self._generator.manual_seed(seed)
        first, count = (dm.num_train_tasks, len(dm.test_tasks)) if config.tasks == "test" else (0, dm.num_train_tasks)
        tasks = first + torch.randint(count, (config.tasks_per_iteration,), generator=self._generator)
        per_task = math.ceil(config.prior_steps / dm.family.horizon)
        lanes = tasks.repeat_interleave(per_task)
        explored = self._trajectories(module, dm, lanes, *prior(len(lanes), module.hparams.latent_dim, module.device), seed)
        to_encoder = dm.encoder is not dm.rl and config.encoder_buffer == "append"
        self._append(dm, tasks, explored, to_encoder)
        collected = explored.numel()

        per_task = math.ceil(config.posterior_steps / dm.family.horizon)
        if per_task:
            lanes = tasks.repeat_interleave(per_task)
            # each task's first posterior trajectory has no context yet: z ~ p(z); the others infer z
            # from a fresh draw of the task's encoder buffer, exploration rows included
            mean, var = prior(len(lanes), module.hparams.latent_dim, module.device)
            inferred = torch.arange(len(lanes)) % per_task != 0
            if inferred.any():
                context = self._context(dm, lanes[inferred], config.context_size, offline_only=False)
                mean[inferred], var[inferred] = module.encoder.posterior(context.to(module.device))
            adapted = self._trajectories(module, dm, lanes, mean, var, seed + len(tasks) * 1_000)
            self._append(dm, tasks, adapted, to_encoder=False)
            collected += adapted.numel()
        module.online_transitions += collected

    @staticmethod
    def _append(dm, tasks: torch.Tensor, trajectories: TensorDict, to_encoder: bool) -> None:
        """Each drawn task's trajectories (its consecutive lanes), in order, to its RL buffer and, if asked, its encoder buffer."""
        for task, rows in zip(tasks.tolist(), trajectories.reshape(len(tasks), -1)):
            dm.rl.extend(task, rows)
            if to_encoder:
                dm.encoder.extend(task, rows)

    def _trajectories(self, module: SMAC, dm, lanes: torch.Tensor, mean, var, seed: int) -> TensorDict:
        """One trajectory per lane with z ~ N(mean, var), on CPU, with eq. (4)'s labels: each trajectory's
        own z ~ q(z | context_size offline rows of its task), the encoder buffer as it was at the switch
        (or the env's own rewards when the Online Oracle collects)."""
        batch = self._collector.trajectories(lanes, mean, var, seed).to(module.device)
        generated = module.self_supervised.rewards == "generated"
        if generated:
            offline = self._context(dm, lanes, module.self_supervised.context_size, offline_only=True)
            z = sample(*module.encoder.posterior(offline.to(module.device)))
            batch["reward"] = label_rewards(module.decoder, batch, z)
        batch["generated"] = torch.full_like(batch["terminated"], generated)
        return batch.cpu()

    def _context(self, dm, lanes: torch.Tensor, n: int, offline_only: bool) -> TensorDict:
        """``n`` rows per lane of its task's encoder buffer (``offline_only``: its offline rows). Held-out
        tasks have no offline rows in the replays: the dataset's held-out encoder rows stand in for them."""
        held_out = lanes >= dm.num_train_tasks
        if not held_out.any():
            return dm.encoder.sample(lanes, n, self._generator, offline_only)
        if offline_only or not dm.encoder.has_rows()[lanes].all():
            return draw_rows(dm.dataset.test_encoder[lanes - dm.num_train_tasks], n, self._generator)
        return dm.encoder.sample(lanes, n, self._generator)

    def on_fit_end(self, trainer: L.Trainer, module: SMAC) -> None:
        if self._collector is not None:
            self._collector.shutdown()
            self._collector = None
