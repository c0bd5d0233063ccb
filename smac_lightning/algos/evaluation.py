"""Meta-test evaluation shared by every meta-learner with an ``encoder`` and a ``policy``."""

from __future__ import annotations

import time

import torch

from smac_lightning.rollout import MetaTester, draw_rows, exploration_draws, training_posteriors

DIAGNOSTICS = (
    "kl_offline_paper", "kl_online_paper", "kl_offline_matched", "kl_online_matched",
    "reward_error_offline", "reward_error_online", "label_error_online",
)


class MetaEvaluation:
    """``validation_step`` and ``test_step`` run the meta-test of ``self.evaluation``.

    The host module has ``encoder``, ``policy``, ``evaluation`` (a ``MetaTestProtocol``),
    ``updates`` and ``progress_metrics()``, and may have a reward ``decoder``.
    """

    _tester: MetaTester | None = None
    test_episodes: dict | None = None  # the last evaluation's held-out trajectories (this rank's tasks)
    switch_episodes: dict | None = None  # ... those of the evaluation at the phase switch, where there is one

    def teardown(self, stage: str) -> None:
        if self._tester is not None:  # its envs, and worker processes with data.env_processes > 1
            self._tester.close()
            self._tester = None

    def meta_test(self) -> dict[str, float]:
        """The meta-test on held-out (and some training) tasks, split across DDP ranks.

        Each rank evaluates every ``world_size``-th task; the per-rank means are combined
        weighted by task counts, so every rank returns the same, exact metrics.
        """
        dm = self.trainer.datamodule
        if self._tester is None:
            self._tester = MetaTester(dm.family, self.evaluation, self.z, processes=dm.env_processes)
        true_task = bool(self.hparams.get("true_task_as_z", False))
        decoder = None if true_task else getattr(self, "decoder", None)
        context_size = self.evaluation.num_exploration * dm.family.horizon
        seed = self.updates  # fresh but reproducible initial states and noise per evaluation
        generator = torch.Generator().manual_seed(seed)
        explore_as_training = self.z.exploration == "training" and not true_task
        bank = training_posteriors(self.encoder, dm, self.evaluation.offline_context_size, generator) if explore_as_training else None
        rank, world = self.trainer.global_rank, self.trainer.world_size
        weighted: dict[str, torch.Tensor] = {}
        started, env_steps = time.perf_counter(), 0
        for split, (tasks, offline) in dm.evaluation_splits(self.evaluation.max_train_tasks).items():
            context = paper = None
            if offline is not None:
                context = draw_rows(offline, context_size, generator)
                paper = draw_rows(offline, self.evaluation.offline_context_size, generator)
            shard = slice(rank, None, world)
            count = len(tasks[shard])
            result = {}
            if count:
                lanes = count * self.evaluation.runs_per_task
                exploring = exploration_draws(bank, lanes, self.evaluation.num_exploration, generator)
                result = self._tester.run(
                    self.encoder, self.policy, tasks[shard].numpy(), None if context is None else context[shard], seed, decoder,
                    offline_context_paper=None if paper is None else paper[shard], true_task_as_z=true_task, exploring=exploring,
                )
                if split == "test":
                    self.test_episodes = self._tester.episodes
                    if self.updates == self.hparams.get("offline_updates"):
                        self.switch_episodes = self.test_episodes
            episodes = count * self.evaluation.runs_per_task * (self.evaluation.num_exploration + 2)
            env_steps += episodes * dm.family.horizon  # at most: episodes may end early
            counts = self._tester.task_counts(tasks[shard].numpy())  # per-group metrics: their tasks only
            for key in self._tester.metric_names(offline is not None, decoder is not None, posterior=not true_task):
                n = counts.get(key, count)
                weighted[f"eval/{split}/{key}"] = torch.tensor([result.get(key, 0.0) * n, n], dtype=torch.float64)
        if world > 1:
            keys = sorted(weighted)
            gathered = self.all_gather(torch.stack([weighted[k] for k in keys]))  # [world, keys, 2]
            weighted = dict(zip(keys, gathered.sum(0)))
        # a group no evaluated task belongs to (every rank agrees, the counts are gathered) is not logged
        metrics = {key: (total / count).item() for key, (total, count) in weighted.items() if count > 0}
        metrics["eval/env_steps_per_second"] = env_steps / (time.perf_counter() - started)
        for key in DIAGNOSTICS:
            if f"eval/train/{key}" in metrics:
                metrics[f"diag/{key}"] = metrics[f"eval/train/{key}"]
        metrics.update(self.progress_metrics())
        self.evaluations.append({"updates": self.updates, **metrics})
        return metrics

    def log_at_update(self, metrics: dict, **kwargs) -> None:
        """``log_dict`` with the update count as the logged step: Lightning's own step counts batches,
        which hold ``updates_per_batch`` updates (checkpoint names follow this step too)."""
        self.log_dict({**metrics, "step": float(self.updates)}, **kwargs)

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log_at_update(self.meta_test(), batch_size=1, sync_dist=True)  # equal on every rank already

    test_step = validation_step
