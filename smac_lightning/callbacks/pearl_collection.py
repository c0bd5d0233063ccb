"""PEARL's collect-then-train loop, driven from the update counter."""

from __future__ import annotations

import itertools
from pathlib import Path

import lightning as L
import torch
from tqdm.auto import tqdm

from smac_lightning.algos.pearl import PEARL
from smac_lightning.collect import TaskRollouts
from smac_lightning.data.export import export_dataset
from smac_lightning.errors import ConfigError
from smac_lightning.evaluation import sample


class PEARLCollector(L.Callback):
    """Iteration ``k``'s collection runs when ``k * updates_per_iteration`` updates are done.

    Iteration 0 first fills every training task's replays with ``initial_steps`` of z ~ p(z).
    Then each iteration draws ``tasks_per_iteration`` tasks and, for all of them in lock-step,
    collects exploration (z ~ p(z); it replaces their encoder replays) and then trajectories
    with z from their new encoder replays (RL replay only). Draws are seeded by the iteration
    index, so a resumed run collects what the uninterrupted one would have.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._rollouts: TaskRollouts | None = None
        self._bar = None

    def on_fit_start(self, trainer: L.Trainer, module: PEARL) -> None:
        export = module.export
        if export is not None and module.iterations_collected < export.iteration and Path(export.path).exists():
            raise ConfigError(
                f"model.export.path {export.path} exists already; this run would not overwrite it at iteration "
                f"{export.iteration}. Delete it or point model.export.path elsewhere."
            )
        if trainer.is_global_zero and trainer.progress_bar_callback is None:
            self._bar = tqdm(total=module.hparams.iterations, initial=module.iterations_collected, desc="PEARL iterations", unit="it")
        self._step(trainer, module)  # before the first meta-batch is drawn

    def on_train_batch_start(self, trainer: L.Trainer, module: PEARL, batch, batch_idx: int) -> None:
        self._step(trainer, module)

    def on_train_end(self, trainer: L.Trainer, module: PEARL) -> None:
        self._maybe_export(trainer, module)
        if self._bar is not None:
            self._bar.close()

    def _step(self, trainer: L.Trainer, module: PEARL) -> None:
        per_iteration, iterations = module.hparams.updates_per_iteration, module.hparams.iterations
        while module.iterations_collected < iterations and module.iterations_collected * per_iteration <= module.updates:
            self._maybe_export(trainer, module)
            self.collect(trainer, module)
            if self._bar is not None:
                self._bar.update(1)
        self._maybe_export(trainer, module)

    def _maybe_export(self, trainer: L.Trainer, module: PEARL) -> None:
        """Export after ``export.iteration`` iterations of collection and training, before the next collection."""
        export = module.export
        done = module.iterations_collected == export.iteration if export else False
        trained = module.updates >= module.iterations_collected * module.hparams.updates_per_iteration
        if done and trained and trainer.is_global_zero and not Path(export.path).exists():
            dataset = export_dataset(export, module, trainer.datamodule)
            tqdm.write(f"exported {export.path}: {dict(dataset.manifest['sizes'])} per task after iteration {export.iteration}")

    @torch.no_grad()
    def collect(self, trainer: L.Trainer, module: PEARL) -> None:
        dm, config = trainer.datamodule, module.collection
        if self._rollouts is None:
            self._rollouts = TaskRollouts(dm.family, dm.train_tasks.numpy())
        k = module.iterations_collected
        generator = torch.Generator().manual_seed((self.seed * 7919 + trainer.global_rank) * 1_000_003 + k)
        seed = int(torch.randint(2**20, (1,), generator=generator))
        latent = module.hparams.latent_dim
        prior = lambda tasks: torch.randn(len(tasks), latent, generator=generator)  # noqa: E731

        def posterior(tasks: list[int]) -> torch.Tensor:
            context = dm.encoder.sample(torch.tensor(tasks), dm.context_size, generator).to(module.device)
            return sample(*module.encoder.posterior(context))

        transitions = 0
        if k == 0:
            for task, rows, _ in self._steps(module, list(range(dm.num_train_tasks)), config.initial_steps, prior, seed):
                dm.rl.extend(task, rows)
                dm.encoder.extend(task, rows)
                transitions += rows.numel()
        tasks = torch.randperm(dm.num_train_tasks, generator=generator)[: config.tasks_per_iteration].tolist()
        for task, rows, first in self._steps(module, tasks, config.prior_steps, prior, seed + 1):
            dm.encoder.extend(task, rows, replace=first)  # the task's context is its newest exploration only
            dm.rl.extend(task, rows)
            transitions += rows.numel()
        for task, rows, _ in self._steps(module, tasks, config.posterior_steps, posterior, seed + 2):
            dm.rl.extend(task, rows)
            transitions += rows.numel()
        module.env_steps += transitions
        module.iterations_collected += 1

    def _steps(self, module: PEARL, tasks: list[int], steps: int, z_for, seed: int):
        """Whole episodes on ``tasks`` until each has ``steps`` transitions (episodes may end early),
        yielding ``(task, rows, first_episode_of_task)``; ``z_for(active tasks)`` gives one z per episode."""
        remaining = dict.fromkeys(tasks, steps)
        for episode in itertools.count():
            active = [task for task in tasks if remaining[task] > 0]
            if not active:
                return
            z = z_for(active).to(module.device)
            was_training = module.policy.training
            module.policy.eval()
            try:
                batch = self._rollouts.episodes(active, module.policy, z, seed * 10_007 + episode)
            finally:
                module.policy.train(was_training)
            for task, rows in zip(active, batch):
                remaining[task] -= rows.numel()
                yield task, rows, episode == 0
