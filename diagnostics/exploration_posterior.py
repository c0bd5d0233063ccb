"""What the posterior from the agent's own exploration knows about the task, checkpoint by checkpoint.

    python diagnostics/exploration_posterior.py --config conf/cheetah_vel.yaml CKPT [CKPT ...] [--tasks 40]

For each checkpoint of one run, on the first ``--tasks`` training tasks: meta-test as the run's
protocol does it (exploration, then the adapted trajectory), and the same policy adapted from an
offline history of as many rows. Printed per checkpoint: the returns of both, the nearest-neighbour
R^2 of the task from each posterior mean (1: z tells the task; 0: no better than the mean task), the
decoder's reward error on the exploration under its own posterior, and how fast the exploration
moves (``--velocity-index``, Cheetah's observation 8) with its spread across tasks: a frozen encoder
reads histories like its training data's, and the exploration drifts from them as the policy learns.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from smac_lightning.callbacks.learning_diagnostics import nearest_neighbour_r2
from smac_lightning.checkpoints import upgrade_hparams
from smac_lightning.cli import cli
from smac_lightning.rollout import MetaTestProtocol, ZSampling
from smac_lightning.rollout.adaptation import MetaTester, exploration_draws, training_posteriors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--config", action="append", required=True, help="the run's config (repeat for overlays)")
    parser.add_argument("--tasks", type=int, default=40, help="training tasks measured (the first ones)")
    parser.add_argument("--velocity-index", type=int, default=8, help="observation entry that is the forward velocity")
    args = parser.parse_args()
    sys.argv[1:] = []  # the CLI below takes its arguments from the list it is given
    made = cli(sum((["--config", c] for c in args.config), []) + ["--trainer.logger", "false"], run=False)
    model, dm = made.model, made.datamodule
    dm.setup("fit")
    tasks = torch.arange(min(args.tasks, dm.num_train_tasks))
    descriptions = dm.train_tasks[tasks].float()
    print(f"{'checkpoint':>28s} {'adapted':>8s} {'offline':>8s} {'R2 expl':>8s} {'R2 offl':>8s} {'rew err':>8s} {'speed':>6s} {'spread':>6s}")
    for path in args.checkpoints:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(checkpoint["state_dict"])
        options = upgrade_hparams(checkpoint["hyper_parameters"])
        protocol = MetaTestProtocol(**{**options["evaluation"], "runs_per_task": 1})
        z = ZSampling(**options.get("z", {}))
        tester = MetaTester(dm.family, protocol, z)
        generator = torch.Generator().manual_seed(0)
        exploration_steps = protocol.num_exploration * dm.family.horizon
        offline = dm.encoder.sample(tasks, exploration_steps, generator)
        with torch.no_grad():
            # p(z), or as the run explored: training tasks' posteriors
            bank = training_posteriors(model.encoder, dm, protocol.offline_context_size, generator) if z.exploration == "training" else None
            exploring = exploration_draws(bank, len(tasks), protocol.num_exploration, generator)
            metrics = tester.run(model.encoder, model.policy, dm.train_tasks[tasks].numpy(), offline, seed=0,
                                 decoder=model.decoder, exploring=exploring)
            explored = tester.episodes["exploration"]
            z_explored = model.encoder.posterior(explored)[0]
            z_offline = model.encoder.posterior(offline)[0]
        valid = explored["valid"].squeeze(-1) if "valid" in explored.keys() else torch.ones(explored.batch_size, dtype=torch.bool)
        speed = (explored["next", "observation"][..., args.velocity_index] * valid).sum(1) / valid.sum(1)
        print(f"{path[-28:]:>28s} {metrics['final_return']:8.1f} {metrics['final_return_offline_context']:8.1f} "
              f"{nearest_neighbour_r2(z_explored.float(), descriptions):8.3f} {nearest_neighbour_r2(z_offline.float(), descriptions):8.3f} "
              f"{metrics['reward_error_online']:8.3f} {speed.mean():6.2f} {np.std(speed.numpy()):6.2f}")


if __name__ == "__main__":
    main()
