"""The switch to self-supervised online meta-training, and the collection that feeds it."""

from __future__ import annotations

import lightning as L
import torch

from smac_lightning.algos.smac import SMAC, Phase
from smac_lightning.collect import ExplorationCollector, label_rewards


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
        self._generator.manual_seed(self.seed + 7919 * trainer.global_rank + module.updates)
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
        dm = trainer.datamodule
        config = module.self_supervised
        if self._collector is None:
            tasks = dm.dataset.train_tasks.numpy()
            self._collector = ExplorationCollector(dm.family, tasks, module.policy, module.hparams.latent_dim)
        tasks = torch.randint(dm.num_train_tasks, (config.trajectories_per_collection,), generator=self._generator)
        trajectories = torch.stack([self._collector.trajectory(int(t)) for t in tasks])
        history = dm.encoder.sample(tasks, config.label_context_size, self._generator, offline_only=True)
        trajectories = trajectories.to(module.device)
        trajectories["reward"] = label_rewards(module.encoder, module.decoder, trajectories, history.to(module.device))
        trajectories["generated"] = torch.ones_like(trajectories["terminated"])
        buffers = [dm.rl, dm.encoder] if config.add_to_encoder_buffer else [dm.rl]
        for task, rows in zip(tasks.tolist(), trajectories.cpu()):
            for buffer in buffers:
                buffer.extend(task, rows)
        module.online_transitions += trajectories.numel()
        module.log("train/online_transitions", float(module.online_transitions))

    def on_fit_end(self, trainer: L.Trainer, module: SMAC) -> None:
        if self._collector is not None:
            self._collector.shutdown()
            self._collector = None
