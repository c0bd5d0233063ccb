"""Sawyer: what the offline data holds, and what a checkpoint's critic and actor make of it.

    python diagnostics/sawyer.py data/sawyer-rl3750-enc3750-seed0 [runs/.../last.ckpt]

The dataset part checks that every stored reward is the evaluation's sparse reward of its next
observation, and gives per desired behaviour the fraction of the data's trajectories that succeed
within 75, 50 and 25 steps. With a checkpoint (trained with ``model.true_task_as_z``, or with an
encoder: then z is the posterior mean of 256 rows of each scene's data), it gives per behaviour the
critic's Q on the data's rewarded and unrewarded rows, Q against the Monte-Carlo return over each
trajectory's first 25 steps (truncated at the trajectory's end, so a bound in magnitude), then runs
the policy on 20 training scenes twice each and reports success, deterministic and sampled, and
where the hand ends against the range the data's hand covers.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from smac_lightning.data.dataset import load_dataset
from smac_lightning.envs.sawyer import scene as S


def rewards_match(observation_next: np.ndarray, reward: np.ndarray, tasks: np.ndarray) -> bool:
    """Whether ``reward`` ``[tasks, rows]`` is the sparse reward of each row's next observation."""
    return bool(np.array_equal(S.sparse_reward(observation_next, tasks[:, None, :]), reward))


def success_within(reward: np.ndarray, horizon: int, steps: int) -> np.ndarray:
    """Per task row, the fraction of its ``horizon``-step trajectories rewarded within their first ``steps``."""
    n, rows = reward.shape
    episodes = reward[:, : rows - rows % horizon].reshape(n, -1, horizon)
    return (episodes[..., :steps] == 0).any(-1).mean(-1)


def discounted_returns(reward: torch.Tensor, horizon: int, gamma: float) -> torch.Tensor:
    """Monte-Carlo returns of ``reward`` ``[tasks, rows]`` cut into ``horizon``-step trajectories."""
    episodes = reward.reshape(reward.shape[0], -1, horizon)
    out, running = torch.zeros_like(episodes), torch.zeros(episodes.shape[:2])
    for t in reversed(range(horizon)):
        running = episodes[..., t] + gamma * running
        out[..., t] = running
    return out.reshape(reward.shape)


def describe_data(ds, horizon: int) -> None:
    for split, buffer, tasks in (("train", ds.train_rl, ds.train_tasks), ("test", ds.test_encoder, ds.test_tasks)):
        tasks = np.asarray(tasks)
        reward = buffer["reward"].squeeze(-1).numpy()
        same = rewards_match(buffer["next", "observation"].numpy(), reward, tasks)
        print(f"{split}: stored rewards are the evaluation's sparse reward of the next observation: {same} ({reward.size} rows)")
        behaviour = S.behaviour_index(tasks)
        within = {steps: success_within(reward, horizon, steps) for steps in (horizon, 50, 25)}
        for b in sorted(set(behaviour)):
            rows = behaviour == b
            fractions = " / ".join(f"{within[k][rows].mean():.2f}" for k in within)
            print(f"  {S.BEHAVIOURS[b]:20s} {rows.sum():2d} scenes; trajectories succeeding within "
                  f"{' / '.join(map(str, within))} steps: {fractions}; rewarded rows {(reward[rows] == 0).mean():.3f}")


@torch.no_grad()
def describe_checkpoint(path: str, ds, horizon: int) -> None:
    from smac_lightning.algos import SMAC
    from smac_lightning.envs import SawyerFamily
    from smac_lightning.rollout.episodes import LockstepEnvs
    from smac_lightning.rollout.latent_policy import LatentPolicy

    model = SMAC.load_from_checkpoint(path, map_location="cpu").eval()
    tasks = np.asarray(ds.train_tasks)
    rl = ds.train_rl[:, : 20 * horizon]
    if model.hparams.true_task_as_z:
        z = torch.as_tensor(tasks, dtype=torch.float32)
    else:
        z = model.encoder.posterior(ds.train_encoder[:, :256])[0]
    z_rows = z[:, None].expand(-1, rl.shape[1], -1)
    q = model.critic(rl["observation"], rl["action"], z_rows).min(0).values.squeeze(-1)
    reward = rl["reward"].squeeze(-1)
    returns = discounted_returns(reward * model.hparams.reward_scale, horizon, model.hparams.gamma)
    start = (torch.arange(rl.shape[1]) % horizon) < 25
    behaviour = S.behaviour_index(tasks)
    for b in sorted(set(behaviour)):
        rows = torch.as_tensor(behaviour == b)
        rewarded = reward[rows] == 0
        print(f"  {S.BEHAVIOURS[b]:20s} Q on rewarded rows {q[rows][rewarded].mean():7.2f}, others {q[rows][~rewarded].mean():7.2f}; "
              f"first 25 steps: Q {q[rows][:, start].mean():7.2f}, Monte-Carlo {returns[rows][:, start].mean():7.2f}")
    hand = rl["observation"][..., 0]
    family = SawyerFamily()
    scenes = np.repeat(family.task_sets()[0][:20], 2, axis=0)
    lanes = LockstepEnvs(family.make_env, family.horizon)
    scene_z = z[:20].repeat_interleave(2, 0)
    for deterministic in (True, False):
        torch.manual_seed(0)
        episodes = lanes.run(scenes, LatentPolicy(model.policy, scene_z, None, False, deterministic).act, 0)
        success = (episodes["reward"].squeeze(-1) == 0).any(-1).float().mean().item()
        end = episodes["next", "observation"][:, -1, 0]
        print(f"  {'deterministic' if deterministic else 'sampled':13s} success {success:.2f} on 20 training scenes x 2; "
              f"hand x at the end {end.mean():.2f} (min {end.min():.2f}); the data's hand x spans [{hand.min():.2f}, {hand.max():.2f}]")
    lanes.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("checkpoint", nargs="?")
    args = parser.parse_args()
    ds = load_dataset(args.dataset)
    horizon = ds.manifest["family"].get("data_horizon", 75)
    describe_data(ds, horizon)
    if args.checkpoint:
        describe_checkpoint(args.checkpoint, ds, horizon)


if __name__ == "__main__":
    main()
