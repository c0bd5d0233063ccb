"""PEARL (Rakelly et al., 2019) on the framework's networks, losses and replays.

Online meta-RL with ground-truth rewards: SAC with entropy tuning on z-conditioned
critics and policy; the encoder learns through the critic's Bellman error plus the
KL to the prior. Its replay buffers, exported part-way, are SMAC's offline datasets,
and trained to the end it is the paper's Online Oracle baseline.
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path

import torch
from tensordict import TensorDict
from tqdm.auto import tqdm

from smac_lightning.algos.base import MetaLearner, config_of
from smac_lightning.data.export import DatasetExport, export_dataset
from smac_lightning.errors import ConfigError
from smac_lightning.losses import critic_loss, kl_to_standard_normal, pearl_actor_loss, soft_td_target, temperature_loss
from smac_lightning.nn import ContextEncoder, CriticEnsemble, TanhGaussianPolicy, rows, sample
from smac_lightning.rollout import CollectorEnvs, PEARLCollection, pearl_iteration


class PEARL(MetaLearner):
    checkpoint_key = "pearl"

    def __init__(
        self,
        target_entropy: float | None = None,
        initial_alpha: float = 1.0,
        iterations: int = 500,
        updates_per_iteration: int = 2000,
        collection: PEARLCollection = PEARLCollection(),
        export: DatasetExport | None = None,
        **shared,
    ):
        """
        Args:
            target_entropy: SAC's entropy target; None: -act_dim.
            initial_alpha: the entropy temperature at the start.
            iterations: collect-then-train iterations.
            updates_per_iteration: gradient updates after each iteration's collection.
            collection: what each iteration collects.
            export: write the replays as an offline dataset at a given iteration (SMAC's data).
            shared: the options every learner has (``MetaLearner``: sizes, learning rate, discount, meta-test).
        """
        super().__init__(**shared)  # saves every option, this class's too, as hparams
        hp = self.hparams
        obs_dim, act_dim, latent_dim = hp.obs_dim, hp.act_dim, hp.latent_dim
        if iterations < 1 or updates_per_iteration < 1:
            raise ConfigError(f"model.iterations and model.updates_per_iteration must be >= 1, got {iterations} and {updates_per_iteration}")
        if initial_alpha <= 0:
            raise ConfigError(f"model.initial_alpha must be > 0 (it is learned in log space), got {initial_alpha}")
        self.encoder = ContextEncoder(obs_dim, act_dim, latent_dim, hp.encoder_hidden)
        self.policy = TanhGaussianPolicy(obs_dim, act_dim, latent_dim, hp.policy_hidden)
        self.critic = CriticEnsemble(obs_dim, act_dim, latent_dim, hp.critic_hidden)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.nn.Parameter(torch.tensor(math.log(initial_alpha)))
        self.target_entropy = -float(act_dim) if target_entropy is None else target_entropy
        self.collection = config_of(PEARLCollection, collection)
        self.export = config_of(DatasetExport, export)
        if self.export is not None and self.export.iteration > iterations:
            raise ConfigError(f"model.export.iteration={self.export.iteration} is beyond model.iterations={iterations}")
        self.iterations_collected = 0
        self.env_steps = 0
        self._envs: LockstepEnvs | None = None  # collection envs, built on first use
        self._bar = None

    def compute_losses(self, context: TensorDict, rl: TensorDict) -> dict[str, torch.Tensor]:
        """All of PEARL's losses for one meta-batch (``context`` ``[T, C]``, ``rl`` ``[T, B]``)."""
        hp = self.hparams
        mean, var = self.encoder.posterior(context)
        z = sample(mean, var)
        batch = rl.batch_size[1]
        z_rows = rows(z, batch)  # carries the critic's gradient to the encoder
        z_fixed = z_rows.detach()  # the policy never trains the encoder
        obs, action, reward = rl["observation"], rl["action"], rl["reward"]
        next_obs, terminated = rl["next", "observation"], rl["terminated"]
        alpha = self.log_alpha.exp().detach()

        a_pi, log_prob_pi = self.policy(obs, z_fixed).rsample()
        q_pi = self.min_q_through_frozen_critic(obs, a_pi, z_fixed)
        with torch.no_grad():
            next_action, next_log_prob = self.policy(next_obs, z_fixed).rsample()
            next_q = self.target_critic(next_obs, next_action, z_fixed).min(0).values
            target = soft_td_target(reward, terminated, next_q, next_log_prob, alpha, hp.gamma, hp.reward_scale)
        losses = {
            "critic_loss": critic_loss(self.critic(obs, action, z_rows), target),
            "kl": kl_to_standard_normal(mean, var).mean(),
            "actor_loss": pearl_actor_loss(q_pi, log_prob_pi, alpha),
            "alpha_loss": temperature_loss(self.log_alpha, log_prob_pi, self.target_entropy),
        }
        losses["entropy"] = -log_prob_pi.detach().mean()
        losses["alpha"] = alpha
        losses["q_mean"] = q_pi.detach().mean()
        return losses

    def training_step(self, batch: TensorDict, batch_idx: int) -> None:
        """One PEARL update: the critics' soft TD error plus the weighted KL train the encoder too;
        the actor and the entropy temperature follow SAC."""
        encoder_opt, critic_opt, actor_opt, alpha_opt = self.optimizers()
        losses = self.compute_losses(batch["context"], batch["rl"])
        total = losses["critic_loss"] + self.hparams.kl_weight * losses["kl"] + losses["actor_loss"] + losses["alpha_loss"]
        self.optimize(total, [encoder_opt, critic_opt, actor_opt, alpha_opt], losses)

    def configure_optimizers(self):
        adam = functools.partial(torch.optim.Adam, lr=self.hparams.lr, fused=True)
        return [adam(self.encoder.parameters()), adam(self.critic.parameters()), adam(self.policy.parameters()), adam([self.log_alpha])]

    # ----------------------------------------------------------------- collect, train, export

    def on_fit_start(self) -> None:
        super().on_fit_start()
        export = self.export
        if export is not None and self.iterations_collected < export.iteration and Path(export.path).exists():
            raise ConfigError(
                f"model.export.path {export.path} exists already; this run would not overwrite it at iteration "
                f"{export.iteration}. Delete it or point model.export.path elsewhere."
            )
        if self.trainer.is_global_zero and self.trainer.progress_bar_callback is None:
            self._bar = tqdm(total=self.hparams.iterations, initial=self.iterations_collected, desc="PEARL iterations", unit="it",
                             disable=None)  # no bar in a log file: the evaluation lines say how far it is
        self._collect_due()  # before the first meta-batch is drawn

    def on_train_batch_start(self, batch, batch_idx: int):
        """Iteration ``k``'s collection runs when ``k * updates_per_iteration`` updates are done."""
        self._collect_due()
        return super().on_train_batch_start(batch, batch_idx)

    def on_train_end(self) -> None:
        self._maybe_export()
        if self._bar is not None:
            self._bar.close()

    def teardown(self, stage: str) -> None:
        super().teardown(stage)
        if self._envs is not None:
            self._envs.close()
            self._envs = None

    def _collect_due(self) -> None:
        per_iteration, iterations = self.hparams.updates_per_iteration, self.hparams.iterations
        while self.iterations_collected < iterations and self.iterations_collected * per_iteration <= self.updates:
            self._maybe_export()
            self.collect()
            if self._bar is not None:
                self._bar.update(1)
        self._maybe_export()

    def collect(self) -> None:
        """Iteration ``iterations_collected``'s data (``rollout.pearl_iteration``), seeded by the
        iteration index, so a resumed run collects what the uninterrupted one would have."""
        dm = self.trainer.datamodule
        if self._envs is None:
            self._envs = CollectorEnvs(dm.family.make_env, dm.family.horizon, dm.env_processes)
        generator = torch.Generator().manual_seed(self.trainer.global_rank * 1_000_003 + self.iterations_collected)
        self.env_steps += pearl_iteration(self, dm, self._envs, generator)
        self.iterations_collected += 1

    def _maybe_export(self) -> None:
        """Export after ``export.iteration`` iterations of collection and training, before the next collection."""
        export = self.export
        done = self.iterations_collected == export.iteration if export else False
        trained = self.updates >= self.iterations_collected * self.hparams.updates_per_iteration
        if done and trained and self.trainer.is_global_zero and not Path(export.path).exists():
            dataset = export_dataset(export, self, self.trainer.datamodule)
            tqdm.write(f"exported {export.path}: {dict(dataset.manifest['sizes'])} per task after iteration {export.iteration}")

    def budgets(self) -> dict[str, int]:
        return {"model.iterations * model.updates_per_iteration": self.hparams.iterations * self.hparams.updates_per_iteration}

    def counter_state(self) -> dict:
        return {"updates": self.updates, "iterations_collected": self.iterations_collected, "env_steps": self.env_steps}

    def load_counter_state(self, state: dict) -> None:
        self.updates, self.iterations_collected, self.env_steps = state["updates"], state["iterations_collected"], state["env_steps"]

    def progress_metrics(self) -> dict[str, float]:
        return {
            "progress/updates": float(self.updates),
            "progress/iteration": float(self.iterations_collected),
            "progress/env_steps": float(self.env_steps),
        }
