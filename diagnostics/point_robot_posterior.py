"""What a Point Robot checkpoint's posterior knows after each exploration protocol, and how well
its policy follows it.

    python diagnostics/point_robot_posterior.py runs/<experiment>/<run>/checkpoints/last.ckpt [--train] [--p-true-goal P]

For held-out goals (or 20 training goals with ``--train``), 8 runs each, every protocol runs two
exploration trajectories, infers the posterior from them and runs one adapted trajectory (z per
step for ``step``, per trajectory otherwise, deterministic actions as in meta-test):

- ``step``: z ~ p(z) afresh at every step (the authors' protocol);
- ``trajectory``: one z ~ p(z) per exploration trajectory;
- ``stochastic``: the same with sampled actions;
- ``sequential``: the second exploration trajectory with z from the posterior of the first (PEARL's);
- ``scripted``: the two histories come from the dataset's scripted behaviour: an offline-like context;
- ``probes``: two fixed, goal-blind histories, noisy straight runs to (1, 0) and to (-1, 0). Their
  rewards are the distances to the goal from two known paths, which fix the goal: an encoder that
  reads the reward field decodes it well; one that recognises rewarded (near-goal) rows does not.

Per protocol it prints the adapted return (all goals; goals within 45 degrees of the top; the
others), the **decoded goal**'s error (the goal on the arc whose true reward function the decoder,
given the posterior mean, matches best over a grid of positions: what the posterior knows,
independently of the policy), the return of a controller that heads straight to the decoded goal
at full speed and stops there (the best any policy can score from that knowledge), and how far the
adapted trajectory ends from the decoded goal (how well the policy follows its z).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from smac_lightning.algos import SMAC
from smac_lightning.envs import PointRobotFamily
from smac_lightning.envs.point_robot import MAX_DISPLACEMENT, GoalSeeker
from smac_lightning.nn import prior
from smac_lightning.rollout.episodes import LockstepEnvs, episode_returns
from smac_lightning.rollout.latent_policy import LatentPolicy

PROTOCOLS = ("step", "trajectory", "stochastic", "sequential", "scripted", "probes")
PROBE_TARGETS = ((1.0, 0.0), (-1.0, 0.0))
ANGLES = torch.linspace(0, np.pi, 181)
ARC = torch.stack([ANGLES.cos(), ANGLES.sin()], -1)  # candidate goals, one per degree


def head_straight_to(target: np.ndarray, goals: np.ndarray, horizon: int) -> np.ndarray:
    """Returns of a controller that moves at full speed towards ``target`` and stops there."""
    position, ret = np.zeros_like(target), np.zeros(len(target))
    for _ in range(horizon):
        offset = target - position
        distance = np.linalg.norm(offset, axis=-1, keepdims=True)
        position = position + np.where(distance > MAX_DISPLACEMENT, MAX_DISPLACEMENT * offset / np.maximum(distance, 1e-9), offset)
        ret -= np.linalg.norm(position - goals, axis=-1)
    return ret


def run_to(target, noise: float, seed: int):
    """A goal-blind controller: the dataset's scripted behaviour with a fixed ``target`` as its intended goal."""
    seeker = GoalSeeker(np.random.default_rng(seed), p_true_goal=1.0, noise=noise)
    seeker.reset(np.asarray([target], dtype=np.float64))  # one target, broadcast over the lanes
    return seeker.act


def probe_positions() -> torch.Tensor:
    grid = torch.stack(torch.meshgrid(torch.linspace(-1.1, 1.1, 23), torch.linspace(-0.1, 1.1, 13), indexing="ij"), -1)
    grid = grid.reshape(-1, 2)
    return grid[grid.norm(dim=-1) <= 1.15]


@torch.no_grad()
def decoded_goals(decoder, mean: torch.Tensor) -> np.ndarray:
    """Per posterior mean, the arc goal whose reward -|x - g| the decoder (action 0) matches best."""
    probes = probe_positions()
    n, p = len(mean), len(probes)
    predicted = decoder(probes.expand(n, p, 2), torch.zeros(n, p, 2), mean[:, None].expand(n, p, mean.shape[-1]))
    true = -(probes[None] - ARC[:, None]).norm(dim=-1)  # [goals, probes]
    return ARC[((predicted.squeeze(-1)[:, None] - true[None]) ** 2).mean(-1).argmin(-1)].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--train", action="store_true", help="20 training goals instead of the held-out ones")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--p-true-goal", type=float, default=PointRobotFamily().p_true_goal,
                        help="the scripted histories' share of goal-directed episodes: the checkpoint's data's (0.4 for the former data)")
    args = parser.parse_args()
    model = SMAC.load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
    family = PointRobotFamily(p_true_goal=args.p_true_goal)  # the configs' goals
    train, test = family.task_sets()
    goals = np.repeat(train[:20] if args.train else test, args.runs, axis=0)
    n, horizon = len(goals), family.horizon
    lanes = LockstepEnvs(family.make_env, horizon)
    top = np.abs(np.arctan2(goals[:, 1], goals[:, 0]) - np.pi / 2) <= np.pi / 4

    def episode(mean, var, per_step: bool, deterministic: bool, seed: int):
        return lanes.run(goals, LatentPolicy(model.policy, mean, var, per_step, deterministic).act, seed)

    print(f"heading straight to: the true goal {head_straight_to(goals, goals, horizon).mean():.2f}, "
          f"the top of the arc {head_straight_to(np.tile([0.0, 1.0], (n, 1)), goals, horizon).mean():.2f}; standing still -20")
    for name in PROTOCOLS:
        torch.manual_seed(0)
        p_z = prior(n, model.hparams.latent_dim, "cpu")
        if name == "scripted":
            history = []
            for k in range(2):
                behaviour = family.behaviour_policy(np.random.default_rng(k))
                behaviour.reset(goals)
                history.append(lanes.run(goals, behaviour.act, k))
        elif name == "probes":
            history = [lanes.run(goals, run_to(target, 0.3, k), k) for k, target in enumerate(PROBE_TARGETS)]
        elif name == "sequential":
            history = [episode(*p_z, False, True, 0)]
            history.append(episode(*model.encoder.posterior(history[0]), False, True, 1))
        else:
            history = [episode(*p_z, name == "step", name != "stochastic", k) for k in range(2)]
        mean, var = model.encoder.posterior(torch.cat(history, 1))
        adapted = episode(mean, var, name == "step", True, 9)
        returns = episode_returns(adapted).numpy()
        decoded = decoded_goals(model.decoder, mean)
        end = adapted["next", "observation"][:, -1].numpy()
        explored = [round(episode_returns(h).mean().item(), 2) for h in history]
        print(f"{name:10s} adapted {returns.mean():6.2f} (top {returns[top].mean():6.2f}, sides {returns[~top].mean():6.2f}) | "
              f"exploration {explored} | decoded-goal error {np.linalg.norm(decoded - goals, axis=-1).mean():.2f} | "
              f"straight to it {head_straight_to(decoded, goals, horizon).mean():6.2f} | "
              f"adapted end to decoded goal {np.linalg.norm(end - decoded, axis=-1).mean():.2f}")


if __name__ == "__main__":
    main()
