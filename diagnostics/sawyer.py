"""Sawyer: what the offline data holds, and what a checkpoint's critic and actor make of it.

    python diagnostics/sawyer.py data/sawyer-rl3750-enc3750-seed0 [runs/.../last.ckpt [--meta-test [--eval-seeds 0,1,2]]]

The dataset part checks that every stored reward is the evaluation's sparse reward of its next
observation, and gives per desired behaviour the fraction of the data's trajectories that succeed
within 75, 50 and 25 steps. With a checkpoint (trained with ``model.true_task_as_z``, or with an
encoder: then z is the posterior mean of 256 rows of each scene's data), it gives per behaviour the
critic's Q on the data's rewarded and unrewarded rows, Q against the Monte-Carlo return over each
trajectory's first 25 steps (truncated at the trajectory's end, so a bound in magnitude); with an
encoder, what z holds (the behaviour and the drawers' side read back from the posterior means, the
decoder's error with another behaviour's z, where draws from p(z) fall); then it runs
the policy on 20 training scenes twice each and reports success, deterministic and sampled, and
where the hand ends against the range the data's hand covers, and where the AWAC weights of a
meta-batch land: on rows how many steps before their trajectory's first success. Every move-hand
episode is listed with the hand's closest approach to its goal, every top-drawer episode with the
hand's closest approach to the handle, the finger gap there and the widest opening. ``--meta-test`` also runs the
checkpoint's meta-test protocol on the held-out scenes and lists their move-hand episodes.

``--bc-bound UPDATES`` trains a policy of the model's shape by behaviour cloning on the data's
successful trajectories up to their first success, with the true task in z's place, and reports
its success in the simulator: what an actor that extracted exactly the data's successes could do.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from smac_lightning.data.dataset import load_dataset
from smac_lightning.envs import SawyerFamily
from smac_lightning.envs.sawyer import scene as S
from smac_lightning.losses import awac_weights, effective_sample_fraction
from smac_lightning.rollout.episodes import LockstepEnvs
from smac_lightning.rollout.latent_policy import LatentPolicy


def rewards_match(observation_next: np.ndarray, reward: np.ndarray, tasks: np.ndarray) -> bool:
    """Whether ``reward`` ``[tasks, rows]`` is the sparse reward of each row's next observation."""
    return bool(np.array_equal(S.sparse_reward(observation_next, tasks[:, None, :]), reward))


def success_within(reward: np.ndarray, horizon: int, steps: int) -> np.ndarray:
    """Per task row, the fraction of its ``horizon``-step trajectories rewarded within their first ``steps``."""
    n, rows = reward.shape
    episodes = reward[:, : rows - rows % horizon].reshape(n, -1, horizon)
    return (episodes[..., :steps] == 0).any(-1).mean(-1)


def replay_deviation(family, task: np.ndarray, observation: np.ndarray, action: np.ndarray,
                     observation_next: np.ndarray, reward: np.ndarray) -> float:
    """The simulator reset to ``task`` and given one stored trajectory's actions: the largest deviation
    of its start and next observations from the stored ones (inf where a reward differs). PyBullet
    carries contact caches across resets, so a trajectory generated after others in the same
    process may deviate by float rounding."""
    env = family.make_data_env(task)
    start, _ = env.reset()
    deviation = np.abs(start - observation[0]).max()
    for t, a in enumerate(action):
        o, r, *_ = env.step(a)
        deviation = max(deviation, np.abs(o - observation_next[t]).max(), 0.0 if r == reward[t] else np.inf)
    env.close()
    return float(deviation)


NEVER = 10**6  # steps_to_success of a row whose trajectory never succeeds


def steps_to_success(reward: np.ndarray, horizon: int) -> np.ndarray:
    """Per row of ``reward`` ``[tasks, rows]``: the steps from it to its trajectory's first rewarded
    row (0 on that row, negative after it), ``NEVER`` where the trajectory has none."""
    n, rows = reward.shape
    episodes = reward.reshape(n, rows // horizon, horizon) == 0
    steps = episodes.argmax(-1)[..., None] - np.arange(horizon)
    return np.where(episodes.any(-1)[..., None], steps, NEVER).reshape(n, rows)


def discounted_returns(reward: torch.Tensor, horizon: int, gamma: float) -> torch.Tensor:
    """Monte-Carlo returns of ``reward`` ``[tasks, rows]`` cut into ``horizon``-step trajectories."""
    episodes = reward.reshape(reward.shape[0], -1, horizon)
    out, running = torch.zeros_like(episodes), torch.zeros(episodes.shape[:2])
    for t in reversed(range(horizon)):
        running = episodes[..., t] + gamma * running
        out[..., t] = running
    return out.reshape(reward.shape)


def describe_data(ds, horizon: int) -> None:
    family = SawyerFamily(data_horizon=horizon)
    for split, buffer, tasks in (("train", ds.train_rl, ds.train_tasks), ("test", ds.test_encoder, ds.test_tasks)):
        tasks = np.asarray(tasks)
        reward = buffer["reward"].squeeze(-1).numpy()
        same = rewards_match(buffer["next", "observation"].numpy(), reward, tasks)
        print(f"{split}: stored rewards are the evaluation's sparse reward of the next observation: {same} ({reward.size} rows)")
        behaviour = S.behaviour_index(tasks)
        within = {steps: success_within(reward, horizon, steps) for steps in (horizon, 50, 25)}
        replays = [(t, k) for t in range(0, len(tasks), max(1, len(tasks) // 5)) for k in (0, 1)]
        deviation = max(replay_deviation(family, tasks[t], *(buffer[key][t, k * horizon:(k + 1) * horizon].numpy()
                                         for key in ("observation", "action", ("next", "observation"))),
                                         reward[t, k * horizon:(k + 1) * horizon]) for t, k in replays)
        print(f"  replaying stored actions in the simulator: largest observation deviation {deviation:.1e} "
              f"({len(replays)} trajectories; inf: a reward differs)")
        for b in sorted(set(behaviour)):
            rows = behaviour == b
            fractions = " / ".join(f"{within[k][rows].mean():.2f}" for k in within)
            print(f"  {S.BEHAVIOURS[b]:20s} {rows.sum():2d} scenes; trajectories succeeding within "
                  f"{' / '.join(map(str, within))} steps: {fractions}; rewarded rows {(reward[rows] == 0).mean():.3f}")


@torch.no_grad()
def describe_checkpoint(model, ds, horizon: int) -> None:
    tasks = np.asarray(ds.train_tasks)
    rl = ds.train_rl[:, : 20 * horizon]
    if model.hparams.true_task_as_z:
        z = torch.as_tensor(tasks, dtype=torch.float32)
    else:
        posterior = model.encoder.posterior(ds.train_encoder[:, :256])
        z = posterior[0]
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
    if not model.hparams.true_task_as_z:
        describe_posterior(model, ds, posterior)
    describe_awac_weights(model, ds, z, horizon)
    hand = rl["observation"][..., 0]
    print(f"  the data's hand x spans [{hand.min():.2f}, {hand.max():.2f}]")
    run_policy(model.policy, z, np.asarray(ds.train_tasks))


def nearest_centroid_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out: the fraction of points whose nearest class centroid (of the other points) is their own class."""
    hits = []
    for i in range(len(points)):
        others = np.arange(len(points)) != i
        centroids = {k: points[others & (labels == k)].mean(0) for k in np.unique(labels[others])}
        hits.append(min(centroids, key=lambda k: np.linalg.norm(points[i] - centroids[k])) == labels[i])
    return float(np.mean(hits))


@torch.no_grad()
def describe_posterior(model, ds, posterior_256) -> None:
    """What z holds: the behaviour and the drawers' side read back from the training scenes' posterior
    means (from 64 rows, and ``posterior_256``, the one ``describe_checkpoint`` takes z from), the
    decoder's reward error with a scene's own z against another behaviour's and z = 0, and how far
    draws from p(z) fall from every scene's posterior."""
    tasks = np.asarray(ds.train_tasks)
    behaviour, side = S.behaviour_index(tasks), np.rint(tasks[:, S.SIDE]).astype(int)
    chance = np.bincount(behaviour).max() / len(behaviour)
    posteriors = {64: model.encoder.posterior(ds.train_encoder[:, :64]), 256: posterior_256}
    for n, (mean, var) in posteriors.items():
        print(f"  posterior from {n} rows: mean norm {mean.norm(dim=-1).median():.2f}, std {var.sqrt().median():.3f} (medians); "
              f"nearest-centroid accuracy of the behaviour {nearest_centroid_accuracy(mean.numpy(), behaviour):.2f} "
              f"(chance {chance:.2f}), of the drawers' side {nearest_centroid_accuracy(mean.numpy(), side):.2f} (chance 0.5)")
    mean = posterior_256[0]
    rows = ds.train_rl[:, :256]
    other = torch.as_tensor([int(np.flatnonzero(behaviour != b)[0]) for b in behaviour])
    def decoder_error(z):
        predicted = model.decoder(rows["observation"], rows["action"], z[:, None].expand(-1, rows.shape[1], -1))
        return (predicted - rows["reward"]).pow(2).mean(1).squeeze(-1)
    own, swapped, zero = decoder_error(mean), decoder_error(mean[other]), decoder_error(torch.zeros_like(mean))
    for b in sorted(set(behaviour)):
        scenes = torch.as_tensor(behaviour == b)
        print(f"  {S.BEHAVIOURS[b]:20s} decoder squared error with its z {own[scenes].mean():.3f}, "
              f"another behaviour's {swapped[scenes].mean():.3f}, z = 0 {zero[scenes].mean():.3f}")
    draws = torch.randn(2000, mean.shape[-1], generator=torch.Generator().manual_seed(0))
    print(f"  a draw from p(z) lies {torch.cdist(draws, mean).min(1).values.median():.2f} from the nearest scene's posterior mean; "
          f"a scene's mean {torch.cdist(mean, mean).fill_diagonal_(float('inf')).min(1).values.median():.2f} from the nearest other's (medians)")


def run_policy(policy, z: torch.Tensor, tasks: np.ndarray, scenes: int = 20) -> None:
    """Success of ``policy`` (z per scene) on the first ``scenes`` training scenes, twice each,
    deterministic and sampled, and where the hand ends."""
    family = SawyerFamily()
    lanes = LockstepEnvs(family.make_env, family.horizon)
    run_tasks = np.repeat(tasks[:scenes], 2, axis=0)
    behaviour = S.behaviour_index(run_tasks)
    for deterministic in (True, False):
        torch.manual_seed(0)
        episodes = lanes.run(run_tasks, LatentPolicy(policy, z[:scenes].repeat_interleave(2, 0), None, False, deterministic).act, 0)
        success = succeeded(episodes)
        per = ", ".join(f"{S.BEHAVIOURS[b]} {success[behaviour == b].mean():.2f} of {(behaviour == b).sum()}"
                        for b in sorted(set(behaviour)))
        end = episodes["next", "observation"][:, -1, 0]
        print(f"  {'deterministic' if deterministic else 'sampled':13s} success {success.mean():.2f} on {scenes} training scenes x 2 "
              f"({per}); hand x at the end {end.mean():.2f} (min {end.min():.2f})")
        describe_move_hand(episodes, run_tasks, success)
        describe_top_drawer(episodes, run_tasks, success)
    lanes.close()


def succeeded(episodes) -> np.ndarray:
    """Whether each episode reached the sparse reward's success (0) at some step."""
    return (episodes["reward"].squeeze(-1) == 0).any(-1).numpy()


def closest_approach(hand: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per episode, the hand's (``[n, steps, 3]``) smallest distance to its goal (``[n, 3]``) and the step."""
    distance = np.linalg.norm(hand - goal[:, None], axis=-1)
    return distance.min(-1), distance.argmin(-1)


def describe_move_hand(episodes, tasks: np.ndarray, success: np.ndarray) -> None:
    """Move-hand episodes one by one: the goal, the hand's closest approach to it along the path and
    where it ends, to tell an actor that seeks the goal from one whose path happens to pass it."""
    move = np.flatnonzero(S.behaviour_index(tasks) == S.BEHAVIOURS.index("move_hand"))
    hand = episodes["next", "observation"][move, :, :3].numpy()
    goal = np.broadcast_to(S.HAND_GOAL, (len(move), 3))
    closest, step = closest_approach(hand, goal)
    for i in range(len(move)):
        print(f"    move hand to ({goal[i, 0]:.2f}, {goal[i, 1]:+.2f}, {goal[i, 2]:.2f}): closest {closest[i]:.3f} at step "
              f"{step[i]}, ends at ({hand[i, -1, 0]:.2f}, {hand[i, -1, 1]:+.2f}, {hand[i, -1, 2]:.2f})"
              f"{', success' if success[move[i]] else ''}")


def describe_top_drawer(episodes, tasks: np.ndarray, success: np.ndarray) -> None:
    """Top-drawer episodes one by one: the hand's closest approach to the handle (where it stands
    closed), the finger gap there and the widest the drawer opened, to tell an actor that never
    reaches the handle from one that reaches it and does not close on it or pull."""
    top = np.flatnonzero(S.behaviour_index(tasks) == S.BEHAVIOURS.index("open_top_drawer"))
    obs = episodes["next", "observation"][top].numpy()
    handle = np.stack([S.Scene.from_task(t).handle for t in tasks[top]]).reshape(-1, 3)
    closest, step = closest_approach(obs[..., S.OBS_SLICES["hand"]], handle)
    gap = obs[np.arange(len(top)), step, S.OBS_SLICES["gap"].start]
    opening = obs[..., S.OBS_SLICES["handle_drawer"].start].max(-1)
    for i in range(len(top)):
        print(f"    top drawer, handle at ({handle[i, 0]:.2f}, {handle[i, 1]:+.2f}, {handle[i, 2]:.2f}): closest {closest[i]:.3f} "
              f"at step {step[i]}, finger gap there {gap[i]:.3f}, widest opening {opening[i]:.3f}{', success' if success[top[i]] else ''}")


def describe_meta_test(model, ds, seeds: list[int], runs: int = 4, explore_as_training: bool = False) -> None:
    """The checkpoint's meta-test protocol (its own exploration, then the posterior) on the held-out
    scenes under each evaluation seed (a run evaluates with its update count): success per behaviour,
    and split by whether the exploration reached the scene's success at some step (with a sparse
    reward, the posterior learns the desired behaviour only from such steps); then the first seed's
    move-hand episodes one by one. ``explore_as_training``: each exploration trajectory takes z from
    the posterior of a random training scene's 256 offline rows instead of p(z), a probe of what
    exploration that performs the data's behaviours would let the posterior infer."""
    from smac_lightning.rollout.adaptation import MetaTester, MetaTestProtocol

    protocol = MetaTestProtocol(**{**vars(model.evaluation), "runs_per_task": runs})
    tester = MetaTester(SawyerFamily(), protocol, model.z)
    tasks = np.asarray(ds.test_tasks)
    for i, seed in enumerate(seeds):
        exploring = training_posteriors(model, ds, len(tasks) * runs, protocol.num_exploration, seed) if explore_as_training else None
        metrics = tester.run(model.encoder, model.policy, tasks, None, seed=seed, true_task_as_z=model.hparams.true_task_as_z,
                             exploring=exploring)
        print(f"meta-test on the {len(tasks)} held-out scenes x {runs}, seed {seed}: success {metrics['final_success']:.3f}")
        adapted, explored = succeeded(tester.episodes["online"]), succeeded(tester.episodes["exploration"])
        behaviour = S.behaviour_index(tester.episodes["tasks"])
        for b in np.unique(behaviour):
            mine = behaviour == b
            print(f"    {S.BEHAVIOURS[b]}: {explained_by_exploration(explored[mine], adapted[mine])}")
        if i == 0:
            describe_move_hand(tester.episodes["online"], tester.episodes["tasks"], adapted)


@torch.no_grad()
def training_posteriors(model, ds, lanes: int, trajectories: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per exploration trajectory, each lane's (mean, var): the posterior of a random training scene's 256 offline rows."""
    from smac_lightning.rollout import draw_training_z

    bank = model.encoder.posterior(ds.train_encoder[:, :256])
    generator = torch.Generator().manual_seed(seed)
    return [draw_training_z(bank, lanes, generator) for _ in range(trajectories)]


def explained_by_exploration(explored: np.ndarray, adapted: np.ndarray) -> str:
    """Adapted success overall and split by whether the meta-episode's exploration reached success (booleans per meta-episode)."""
    parts = [f"success {adapted.mean():.2f} of {len(adapted)}; exploration reached success in {explored.sum()}"]
    for name, mask in (("after it", explored), ("without", ~explored)):
        if mask.any():
            parts.append(f"adapted success {name} {adapted[mask].mean():.2f}")
    return ", ".join(parts)


@torch.no_grad()
def describe_awac_weights(model, ds, z: torch.Tensor, horizon: int, batches: int = 25, meta_batch: int = 4) -> None:
    """The checkpoint's AWAC weights on meta-batches (``meta_batch`` tasks x 128 rows, the offline phase's)
    of the data, by rows' steps to their trajectory's first success."""
    actor, rl = model.actor, ds.train_rl
    to_success = torch.as_tensor(steps_to_success(rl["reward"].squeeze(-1).numpy(), horizon))
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    weights, steps, advantages = [], [], []
    for _ in range(batches):
        task = torch.randint(rl.shape[0], (meta_batch, 1), generator=generator)
        row = torch.randint(rl.shape[1], (task.shape[0], 128), generator=generator)
        batch, z_rows = rl[task, row], z[task.squeeze(-1)][:, None].expand(-1, 128, -1)
        q = model.critic(batch["observation"], batch["action"], z_rows).min(0).values
        v = model.critic(batch["observation"], model.policy(batch["observation"], z_rows).rsample()[0], z_rows).min(0).values
        w = awac_weights(q, v, actor.beta, actor.clip_score, actor.whiten)
        weights.append(w.flatten() / w.sum())
        steps.append(to_success[task, row].flatten())
        advantages.append((q - v).flatten())
    w, steps, adv = torch.cat(weights) / batches, torch.cat(steps), torch.cat(advantages)
    print(f"  AWAC weights on {batches} meta-batches (beta {actor.beta}): effective sample fraction per batch "
          f"{np.mean([effective_sample_fraction(x).item() for x in weights]):.4f}; by rows' steps to their trajectory's first success:")
    for name, rows in (("after the first success", steps <= 0), ("1-3 steps before", (steps >= 1) & (steps <= 3)),
                       ("4-10 steps before", (steps >= 4) & (steps <= 10)), ("11+ steps before", (steps > 10) & (steps < NEVER)),
                       ("trajectory never succeeds", steps == NEVER)):
        print(f"    {name:26s} rows {rows.float().mean():.3f}, weight {w[rows].sum():.3f}, mean advantage {adv[rows].mean():6.2f}")


def successful_prefixes(reward: np.ndarray, horizon: int, within: int | None = None) -> np.ndarray:
    """Rows of ``reward`` ``[tasks, rows]`` whose trajectory succeeds, up to and including its first success;
    with ``within``, only of trajectories whose first success comes at one of their first ``within`` steps."""
    to_success = steps_to_success(reward, horizon)
    keep = (to_success >= 0) & (to_success < NEVER)
    if within is not None:
        keep &= np.arange(reward.shape[-1]) % horizon + to_success < within
    return keep


def bc_bound(ds, horizon: int, updates: int, seed: int = 0, within: int | None = None, hidden=(300, 300, 300)) -> None:
    """Behaviour cloning of the data's successful prefixes (of the trajectories that succeed ``within``
    steps, if given) with the true task as z; its success."""
    from smac_lightning.nn.policy import TanhGaussianPolicy

    torch.manual_seed(seed)
    tasks = np.asarray(ds.train_tasks)
    rl = ds.train_rl
    keep = torch.as_tensor(successful_prefixes(rl["reward"].squeeze(-1).numpy(), horizon, within))
    z = torch.as_tensor(tasks, dtype=torch.float32)
    rows = rl.reshape(-1)[keep.reshape(-1)]
    task_of_row = rows["task"].squeeze(-1)  # each row's index into the training tasks
    policy = TanhGaussianPolicy(rows["observation"].shape[-1], rows["action"].shape[-1], z.shape[-1], hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-4)
    for _ in range(updates):
        b = torch.randint(len(rows), (512,))
        loss = -policy(rows["observation"][b], z[task_of_row[b]]).log_prob(rows["action"][b]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"behaviour cloning of the successful prefixes{f' within {within} steps' if within else ''} ({keep.float().mean():.2f} of the rows), true task as z, "
          f"{updates} updates, seed {seed}:")
    run_policy(policy, z, tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("checkpoint", nargs="?")
    parser.add_argument("--bc-bound", type=int, default=0, metavar="UPDATES",
                        help="also train and run the successful-prefix behaviour-cloning bound (20,000 updates: ~4 min)")
    parser.add_argument("--seed", type=int, default=0, help="the bound's initialisation and batches")
    parser.add_argument("--within", type=int, default=None, metavar="STEPS",
                        help="clone only the trajectories that succeed within STEPS of their start (the direct performances)")
    parser.add_argument("--meta-test", action="store_true", help="also run the checkpoint's meta-test on the held-out scenes")
    parser.add_argument("--explore-as-training", action="store_true",
                        help="with --meta-test: explore with z from random training scenes' posteriors instead of p(z)")
    parser.add_argument("--eval-seeds", default=[0], type=lambda text: [int(seed) for seed in text.split(",")], metavar="S,S,...",
                        help="the meta-test's seeds: how much one checkpoint's success scatters between evaluations")
    args = parser.parse_args()
    ds = load_dataset(args.dataset)
    horizon = ds.manifest["family"].get("data_horizon", 75)
    describe_data(ds, horizon)
    if args.checkpoint:
        from smac_lightning.algos import SMAC

        model = SMAC.load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
        describe_checkpoint(model, ds, horizon)
        if args.meta_test:
            describe_meta_test(model, ds, args.eval_seeds, explore_as_training=args.explore_as_training)
    if args.bc_bound:
        bc_bound(ds, horizon, args.bc_bound, args.seed, args.within)


if __name__ == "__main__":
    main()
