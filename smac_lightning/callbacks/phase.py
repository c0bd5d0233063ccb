"""The switch to self-supervised online meta-training, and the collection that feeds it."""

from __future__ import annotations

import lightning as L
import torch

from smac_lightning.algos.smac import SMAC, Phase
from smac_lightning.collect import ExplorationCollector, label_rewards
from smac_lightning.evaluation import sample


def freeze(*modules: torch.nn.Module) -> None:
    for module in modules:
        module.requires_grad_(False)
        module.eval()


class SelfSupervisedPhase(L.Callback):
    """At ``offline_updates``: freeze encoder and decoder, then keep collecting labelled data.

    Collection is due whenever ``updates_in_phase >= collected * updates_per_transition``;
    each collection rolls out reward-free trajectories with z ~ p(z) on random
    training tasks, labels them with the frozen decoder from an offline history
    of the same task, and appends them to that task's buffers with
    ``generated=True``. On resume in this phase the freeze is re-applied and
    collection carries on from the restored counters and buffers.
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
            freeze(module.encoder, module.decoder)
            module.phase = Phase.SELF_SUPERVISED
        if module.phase != Phase.SELF_SUPERVISED or module.updates >= module.total_updates:
            return
        config = module.self_supervised
        updates_in_phase = module.updates - module.hparams.offline_updates
        if updates_in_phase >= module.online_transitions * config.updates_per_transition:
            self.collect(trainer, module)

    @torch.no_grad()
    def collect(self, trainer: L.Trainer, module: SMAC) -> None:
        """One round on ``tasks_per_round`` random training tasks: exploration, then adaptation, all labelled.

        Every trajectory of a stage runs in lock-step with the others (one lane each).
        """
        dm, config = trainer.datamodule, module.self_supervised
        if self._collector is None:
            with torch.random.fork_rng():  # building it must not shift the global stream (exact resume)
                self._collector = ExplorationCollector(
                    dm.family, dm.dataset.train_tasks.numpy(), module.policy, module.hparams.latent_dim,
                    config.resample_prior_every_step, reward_free=config.rewards == "generated",
                )
        # Seeded by counters, not carried along, so a resumed run draws the same rounds.
        round_seed = (self.seed * 7919 + trainer.global_rank) * 1_000_003 + module.online_transitions
        self._generator.manual_seed(round_seed)
        tasks = torch.randperm(dm.num_train_tasks, generator=self._generator)[: config.tasks_per_round]
        k = len(tasks)
        offline = dm.encoder.sample(tasks, config.label_context_size, self._generator, offline_only=True)
        z_label = sample(*module.encoder.posterior(offline.to(module.device)))  # one per task, labels its round (eq. 4)

        explored = self._collector.trajectories(tasks.repeat_interleave(config.prior_trajectories), None, round_seed)
        explored = self._labelled(module, explored, z_label.repeat_interleave(config.prior_trajectories, 0))
        exploration = explored.reshape(k, -1)  # [task, prior_trajectories * horizon]
        rows = exploration
        if config.posterior_trajectories:
            z_adapted = sample(*module.encoder.posterior(exploration)).cpu()
            repeat = config.posterior_trajectories
            seed = round_seed + k * config.prior_trajectories  # past the exploration lanes' reset seeds
            adapted = self._collector.trajectories(tasks.repeat_interleave(repeat), z_adapted.repeat_interleave(repeat, 0), seed)
            adapted = self._labelled(module, adapted, z_label.repeat_interleave(repeat, 0))
            rows = torch.cat([exploration, adapted.reshape(k, -1)], dim=1)

        for i, task in enumerate(tasks.tolist()):
            dm.rl.extend(task, rows[i].cpu())
            if config.encoder_buffer != "freeze":
                dm.encoder.extend(task, exploration[i].cpu(), replace=config.encoder_buffer == "replace")
        module.online_transitions += rows.numel()
        module.log("train/online_transitions", float(module.online_transitions))

    @staticmethod
    def _labelled(module: SMAC, batch, z: torch.Tensor):
        """Eq. (4)'s labels (one z per trajectory), or the env's own rewards when the Online Oracle collected them."""
        batch = batch.to(module.device)
        generated = module.self_supervised.rewards == "generated"
        if generated:
            batch["reward"] = label_rewards(module.decoder, batch, z.to(module.device))
        batch["generated"] = torch.full_like(batch["terminated"], generated)
        return batch

    def on_fit_end(self, trainer: L.Trainer, module: SMAC) -> None:
        if self._collector is not None:
            self._collector.shutdown()
            self._collector = None
