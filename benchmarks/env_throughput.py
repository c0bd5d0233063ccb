"""Env steps per second of each task family: the raw gymnasium loop versus the project's runner.

For each family, in one run and on the same env:

- ``raw``: ``env.step`` with uniform random actions, resetting at episode ends (the ceiling);
- ``raw+policy``: the same loop with one z-conditioned policy forward per step (numpy <-> torch);
- ``lockstep``: ``rollout.LockstepEnvs`` (scripted data generation), ``--tasks`` lanes of one
  episode each stepped together, one batched policy forward per step with z drawn per step
  (``LatentPolicy``), counted in valid env steps of all lanes together (a self-supervised stage
  of 5 tasks x 2 trajectories is 10 lanes);
- ``lockstep_1lane``: the same with one lane (one trajectory at a time);
- ``collector``: ``rollout.CollectorEnvs``, the same lanes and policy through a TorchRL ``Collector``
  over one ``LanesEnv`` in this process (what collection and meta-test use), and ``collector_procs``
  over a ``ParallelEnv`` of ``--processes`` workers (``data.env_processes``).

Ratios are against ``raw`` and ``raw+policy``. The last line printed is JSON with every figure.

    python benchmarks/env_throughput.py                    # every family, 2,000 steps each
    python benchmarks/env_throughput.py --families cheetah_vel --steps 5000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from smac_lightning.envs import ALL_FAMILIES
from smac_lightning.nn import TanhGaussianPolicy, prior
from smac_lightning.rollout import CollectorEnvs, LatentPolicy, LockstepEnvs

FAMILIES = {f.name: f for f in ALL_FAMILIES}
LATENT = 5


def rate(run, steps: int) -> float:
    run(min(steps // 10, 200))  # warm-up
    started = time.perf_counter()
    done = run(steps)
    return done / (time.perf_counter() - started)


def raw_loop(env, steps: int, act) -> int:
    observation, _ = env.reset(seed=0)
    for _ in range(steps):
        observation, _, terminated, truncated, _ = env.step(act(observation))
        if terminated or truncated:
            observation, _ = env.reset()
    return steps


def measure(name: str, steps: int, tasks: int, hidden: list[int], processes: int = 2) -> dict:
    family = FAMILIES[name](num_train_tasks=max(tasks, 1), num_test_tasks=1, horizon=200)
    train, _ = family.task_sets()
    env = family.make_env(train[0])
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    policy = TanhGaussianPolicy(obs_dim, act_dim, LATENT, hidden)
    z = torch.randn(1, LATENT)
    rng = np.random.default_rng(0)

    @torch.no_grad()
    def policy_act(observation):
        return policy(torch.as_tensor(observation, dtype=torch.float32)[None], z).rsample()[0][0].numpy()

    figures = {
        "raw": rate(lambda n: raw_loop(env, n, lambda _: rng.uniform(-1, 1, act_dim).astype(np.float32)), steps),
        "raw+policy": rate(lambda n: raw_loop(env, n, policy_act), steps),
    }
    def runner(lanes, count):
        def run(n):
            done = 0
            while done < n:
                actor = LatentPolicy(policy, *prior(count, LATENT), per_step=True)
                done += int(lanes.run(train[np.arange(count) % len(train)], actor.act, seed=done)["valid"].sum())
            return done
        return run

    for key, make_lanes, count in [
        ("lockstep", lambda: LockstepEnvs(family.make_env, family.horizon), tasks),
        ("lockstep_1lane", lambda: LockstepEnvs(family.make_env, family.horizon), 1),
        ("collector", lambda: CollectorEnvs(family.make_env, family.horizon), tasks),
        ("collector_procs", lambda: CollectorEnvs(family.make_env, family.horizon, processes), tasks),
    ]:
        lanes = make_lanes()
        figures[key] = rate(runner(lanes, count), steps)
        lanes.close()
    return (
        {key: round(value) for key, value in figures.items()}
        | {f"{key}_vs_raw": round(value / figures["raw"], 2) for key, value in figures.items() if key != "raw"}
        | {f"{key}_vs_raw+policy": round(figures[key] / figures["raw+policy"], 2) for key in ("lockstep", "lockstep_1lane")}
        | {f"{key}_vs_lockstep": round(figures[key] / figures["lockstep"], 2) for key in ("collector", "collector_procs")}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--steps", type=int, default=2000, help="env steps timed per measurement")
    parser.add_argument("--tasks", type=int, default=10, help="lanes (envs stepped together) in the lock-step measurement")
    parser.add_argument("--hidden", type=int, nargs="+", default=[300, 300, 300], help="policy widths (paper: 300 x 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (collection runs beside training)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes of the collector_procs measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for name in args.families:
        results[name] = measure(name, args.steps, args.tasks, args.hidden, args.processes)
        print(name, results[name], flush=True)
    print(json.dumps({"steps": args.steps, "tasks": args.tasks, "threads": args.threads, "processes": args.processes, "families": results}))


if __name__ == "__main__":
    main()
