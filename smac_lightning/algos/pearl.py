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
from dataclasses import dataclass

import torch
from tensordict import TensorDict

from smac_lightning.algos.base import MetaLearner
from smac_lightning.algos.smac import _as
from smac_lightning.data.export import DatasetExport
from smac_lightning.errors import ConfigError
from smac_lightning.evaluation import MetaTestProtocol, sample
from smac_lightning.losses import critic_loss, kl_to_standard_normal, pearl_actor_loss, soft_td_target, temperature_loss
from smac_lightning.nn import ContextEncoder, CriticEnsemble, TanhGaussianPolicy


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


class PEARL(MetaLearner):
    checkpoint_key = "pearl"

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        latent_dim: int = 5,
        encoder_hidden: tuple[int, ...] = (200, 200, 200),
        policy_hidden: tuple[int, ...] = (300, 300, 300),
        critic_hidden: tuple[int, ...] = (300, 300, 300),
        use_next_obs_in_context: bool = False,
        lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        reward_scale: float = 5.0,
        kl_weight: float = 0.1,
        target_entropy: float | None = None,
        initial_alpha: float = 1.0,
        iterations: int = 500,
        updates_per_iteration: int = 2000,
        collection: PEARLCollection = PEARLCollection(),
        evaluation: MetaTestProtocol = MetaTestProtocol(),
        export: DatasetExport | None = None,
        compile_losses: bool = False,
    ):
        """
        Args:
            obs_dim: observation size (linked from the data module).
            act_dim: action size (linked from the data module).
            latent_dim: size of the task variable z.
            encoder_hidden: hidden widths of the context encoder.
            policy_hidden: hidden widths of the policy.
            critic_hidden: hidden widths of each Q-network.
            use_next_obs_in_context: encode (s, a, r, s') instead of (s, a, r).
            lr: Adam learning rate of every optimizer.
            gamma: discount.
            tau: soft target update rate.
            reward_scale: multiplies rewards in the Bellman target.
            kl_weight: weight of KL(q(z|h) || p(z)) in the encoder loss.
            target_entropy: SAC's entropy target; None: -act_dim.
            initial_alpha: the entropy temperature at the start.
            iterations: collect-then-train iterations.
            updates_per_iteration: gradient updates after each iteration's collection.
            collection: what each iteration collects.
            evaluation: the meta-test protocol.
            export: write the replays as an offline dataset at a given iteration (SMAC's data).
            compile_losses: run the loss computation through ``torch.compile`` (first update ~30 s slower).
        """
        super().__init__()
        self.save_hyperparameters()
        if iterations < 1 or updates_per_iteration < 1:
            raise ConfigError(f"model.iterations and model.updates_per_iteration must be >= 1, got {iterations} and {updates_per_iteration}")
        if initial_alpha <= 0:
            raise ConfigError(f"model.initial_alpha must be > 0 (it is learned in log space), got {initial_alpha}")
        self.encoder = ContextEncoder(obs_dim, act_dim, latent_dim, encoder_hidden, use_next_obs_in_context)
        self.policy = TanhGaussianPolicy(obs_dim, act_dim, latent_dim, policy_hidden)
        self.critic = CriticEnsemble(obs_dim, act_dim, latent_dim, critic_hidden)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.nn.Parameter(torch.tensor(math.log(initial_alpha)))
        self.target_entropy = -float(act_dim) if target_entropy is None else target_entropy
        self.collection = _as(PEARLCollection, collection)
        self.evaluation = _as(MetaTestProtocol, evaluation)
        self.export = _as(DatasetExport, export)
        if self.export is not None and self.export.iteration > iterations:
            raise ConfigError(f"model.export.iteration={self.export.iteration} is beyond model.iterations={iterations}")
        self.iterations_collected = 0
        self.env_steps = 0

    def compute_losses(self, context: TensorDict, rl: TensorDict) -> dict[str, torch.Tensor]:
        """All of PEARL's losses for one meta-batch (``context`` ``[T, C]``, ``rl`` ``[T, B]``)."""
        hp = self.hparams
        mean, var = self.encoder.posterior(context)
        z = sample(mean, var)
        tasks, batch = rl.batch_size
        z_rows = z.unsqueeze(1).expand(tasks, batch, z.shape[-1])  # carries the critic's gradient to the encoder
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

    def update(self, batch: TensorDict, optimizers, backward) -> dict[str, torch.Tensor]:
        """One PEARL update; the encoder's loss is the critic's Bellman error plus the weighted KL."""
        losses = self.compute_losses(batch["context"], batch["rl"])
        total = losses["critic_loss"] + self.hparams.kl_weight * losses["kl"] + losses["actor_loss"] + losses["alpha_loss"]
        return self.apply_update(total, losses, optimizers, backward)

    def configure_optimizers(self):
        adam = functools.partial(torch.optim.Adam, lr=self.hparams.lr, fused=True)
        return [adam(self.encoder.parameters()), adam(self.critic.parameters()), adam(self.policy.parameters()), adam([self.log_alpha])]

    def configure_callbacks(self):
        from smac_lightning.callbacks.pearl_collection import PEARLCollector

        return [PEARLCollector()]

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
