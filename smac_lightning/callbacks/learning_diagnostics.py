"""Why a run does or does not learn, measured at every evaluation: what drives the actor, what its
actions look like, and whether the critic's values match the returns of the replay's episodes.

Attach it to a SMAC fit: ``--trainer.callbacks+=smac_lightning.callbacks.LearningDiagnostics``. It
draws its own meta-batch from its own generator and restores the global random state, so the run's
updates, evaluations and collections are the same with it or without it.
"""

from __future__ import annotations

import lightning as L
import torch

from smac_lightning.data.episodes import episode_ends, episode_index
from smac_lightning.losses import awac_actor_loss, awac_weights, pearl_actor_loss
from smac_lightning.nn import rows

SATURATED = 0.99  # |action| above which a deterministic action counts as saturated


def bootstrapped_returns(reward: torch.Tensor, episode_end: torch.Tensor, last_value: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per row of ``reward`` ``[tasks, rows, 1]``: the discounted sum of its episode's rewards from that
    row on, plus ``gamma`` to the remaining steps times ``last_value`` (``[tasks, rows, 1]``, read at
    each episode's last row): a Monte-Carlo return whose tail, cut by the time limit, the critic
    supplies with a weight that is small far from the episode's end. Rows after the last end count
    as an episode closed there."""
    episode_end = episode_end.clone()
    episode_end[..., -1, :] = True
    out = torch.empty_like(reward, dtype=torch.float64)
    carry = torch.zeros(reward.shape[0], 1, dtype=torch.float64)
    for t in range(reward.shape[1] - 1, -1, -1):
        ends = episode_end[:, t]
        carry = torch.where(ends, reward[:, t].double() + gamma * last_value[:, t].double(), reward[:, t].double() + gamma * carry)
        out[:, t] = carry
    return out.to(reward.dtype)


def nearest_neighbour_r2(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """R^2 of predicting each row of ``targets`` by the row whose ``features`` are nearest (itself excluded)."""
    distance = torch.cdist(features, features)
    distance.fill_diagonal_(float("inf"))
    predicted = targets[distance.argmin(1)]
    return 1 - (predicted - targets).pow(2).sum() / (targets - targets.mean(0)).pow(2).sum()


def gradient_norm(loss: torch.Tensor, parameters: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads)]
    return torch.sqrt(sum(g.pow(2).sum() for g in grads)), grads


class LearningDiagnostics(L.Callback):
    """Logs ``diag/*`` at each evaluation of a SMAC fit (see the module docstring):

    - ``actor_grad_awac``, ``actor_grad_pearl``: the norm of each actor term's gradient over the
      policy's parameters (eq. (2) as weighted; the PEARL term times ``lambda_pearl``, also before
      the phase, to show what it would add), ``actor_grad_cosine`` between them;
    - ``policy_std``: the mean pre-tanh std; ``action_mean_abs``, ``action_saturation``: of the
      deterministic actions on the meta-batch's states;
    - ``q_data``, ``q_returns``, ``q_error``: the critic's min Q on the first ``early_steps`` rows of
      the replay's episodes against their bootstrapped Monte-Carlo returns (``bootstrapped_returns``,
      scaled as the Bellman target), for the newest online episodes (``online_``) and the offline
      ones (``offline_``); z is each task's posterior mean from its context buffer;
    - ``posterior_task_r2``: how much the posterior means tell the training tasks apart (``nearest_neighbour_r2``).
    """

    def __init__(self, seed: int = 12345, tasks: int = 8, early_steps: int = 50):
        self.seed, self.tasks, self.early_steps = seed, tasks, early_steps

    def on_validation_epoch_end(self, trainer: L.Trainer, module) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            torch.manual_seed(self.seed + module.updates)
            metrics = self.measure(module, trainer.datamodule)
        module.log_at_update(metrics, batch_size=1)

    def measure(self, module, dm) -> dict[str, float]:
        hp, actor = module.hparams, module.actor
        generator = torch.Generator().manual_seed(self.seed + module.updates)
        size = dm.rl_batch_size(dm.batches_consumed)
        batch = dm.sample_meta_batch(generator, size).to(module.device)
        rl, z = batch["rl"], self._z(module, batch["context"], batch["task_description"])
        obs, action = rl["observation"], rl["action"]
        z_rows = rows(z, size)
        dist = module.policy(obs, z_rows)
        a_pi, log_prob_pi = dist.rsample()
        q_pi = module.min_q_through_frozen_critic(obs, a_pi, z_rows)
        with torch.no_grad():
            q_data = module.critic(obs, action, z_rows).min(0).values
            weights = awac_weights(q_data, q_pi.detach(), actor.beta, actor.clip_score, actor.whiten)
        parameters = [p for p in module.policy.parameters()]
        awac_norm, awac_grad = gradient_norm(awac_actor_loss(dist.log_prob(action), weights), parameters)
        pearl_norm, pearl_grad = gradient_norm(actor.lambda_pearl * pearl_actor_loss(q_pi, log_prob_pi), parameters)
        flat_a, flat_p = torch.cat([g.flatten() for g in awac_grad]), torch.cat([g.flatten() for g in pearl_grad])
        deterministic = dist.deterministic.detach()
        metrics = {
            "diag/actor_grad_awac": awac_norm, "diag/actor_grad_pearl": pearl_norm,
            "diag/actor_grad_cosine": torch.nn.functional.cosine_similarity(flat_a, flat_p, dim=0),
            "diag/policy_std": dist.std.detach().mean(),
            "diag/action_mean_abs": deterministic.abs().mean(),
            "diag/action_saturation": (deterministic.abs() > SATURATED).float().mean(),
        }
        for name, online in (("online", True), ("offline", False)):
            metrics.update(self._critic_against_returns(module, dm, name, online, generator))
        if not hp.get("true_task_as_z"):
            metrics["diag/posterior_task_r2"] = self._posterior_task_r2(module, dm, generator)
        return {k: float(v) for k, v in metrics.items()}

    @torch.no_grad()
    def _posterior_task_r2(self, module, dm, generator: torch.Generator) -> torch.Tensor:
        """How much of the training tasks' descriptions their posterior means carry: each task's
        description predicted by that of the task whose posterior mean (from ``context_size`` rows of
        its encoder buffer) lies nearest, as R^2 (1: z tells the task, 0: no better than the mean task)."""
        tasks = torch.arange(dm.num_train_tasks)
        mean = module.encoder.posterior(dm.encoder.sample(tasks, dm.context_size, generator).to(module.device))[0]
        return nearest_neighbour_r2(mean.float().cpu(), dm.train_tasks.float())

    def _z(self, module, context, task_description) -> torch.Tensor:
        if module.hparams.get("true_task_as_z"):
            return task_description.to(module.device)
        with torch.no_grad():
            return module.encoder.posterior(context)[0]

    @torch.no_grad()
    def _critic_against_returns(self, module, dm, name: str, online: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        replay, horizon, hp = dm.rl, dm.family.horizon, module.hparams
        if online:
            have = (replay.written >= horizon).nonzero().flatten()
            if not len(have):
                return {}
            tasks = have[torch.randperm(len(have), generator=generator)[: self.tasks]]
            n = horizon * max(1, min(int(replay.written[tasks].min()), replay.online_capacity) // horizon)
            n = min(n, 5 * horizon)
            first = replay.written[tasks] - n  # the newest n rows, in the order written
            slots = replay.offline_size + (first.unsqueeze(1) + torch.arange(n)) % replay.online_capacity
            episodes = replay.storage[tasks.unsqueeze(1), slots]
        else:
            tasks = torch.randperm(dm.num_train_tasks, generator=generator)[: self.tasks]
            episodes = replay.storage[tasks, : replay.offline_size]
        context = dm.encoder.sample(tasks, dm.context_size, generator)
        z = self._z(module, context.to(module.device), dm.task_descriptions[tasks].float())
        episodes = episodes.to(module.device)
        obs, action, next_obs = episodes["observation"], episodes["action"], episodes["next", "observation"]
        z_rows = rows(z, obs.shape[1])
        q = module.critic(obs, action, z_rows).min(0).values
        next_action = module.policy(next_obs, z_rows).deterministic
        next_v = module.target_critic(next_obs, next_action, z_rows).min(0).values
        tail = torch.where(episodes["terminated"], torch.zeros_like(next_v), next_v)
        returns = bootstrapped_returns(hp.reward_scale * episodes["reward"], episode_ends(episodes), tail, hp.gamma)
        _, first = episode_index(episode_ends(episodes))
        early = ((torch.arange(obs.shape[1], device=first.device) - first) < self.early_steps).unsqueeze(-1)
        q, returns = q[early], returns[early]
        return {
            f"diag/{name}_q_data": q.mean(), f"diag/{name}_q_returns": returns.mean(),
            f"diag/{name}_q_error": (q - returns).abs().mean(),
        }
