"""How well eq. (4)'s labels follow the true rewards on the phase's own data, by how fast the agent moved.

    python diagnostics/labels.py runs/.../last.ckpt --config conf/cheetah_vel.yaml [--config ...] [--decoder OTHER.ckpt]

The checkpoint must come from a run whose online rows kept their true rewards (the Online Oracle:
``--model.self_supervised.rewards true``): its replay holds the agent's own exploration and adapted
trajectories with the env's rewards. Each online row is labelled as SMAC's collection labels it (the
frozen decoder, z from 256 of the task's offline encoder rows), and the label's error against the
true reward is reported overall and by the row's forward velocity (``--velocity-index``, Cheetah's
observation 8), against the offline RL rows' own: a decoder trained on the offline rows can only
extrapolate to states those rows never reached. ``--decoder`` takes the encoder and decoder from
another checkpoint of the same shapes (another eq. (3), say), the rows from the first.
"""

from __future__ import annotations

import argparse
import sys

import torch

from smac_lightning.cli import cli
from smac_lightning.nn import sample
from smac_lightning.rollout.self_supervised import context_rows, label_rewards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--config", action="append", required=True, help="the run's config (repeat for overlays)")
    parser.add_argument("--velocity-index", type=int, default=8, help="observation entry that is the forward velocity")
    parser.add_argument("--context-size", type=int, default=256)
    parser.add_argument("--decoder", help="a checkpoint whose encoder and decoder label the rows instead")
    args = parser.parse_args()
    sys.argv[1:] = []  # the CLI below takes its arguments from the list it is given
    made = cli(sum((["--config", c] for c in args.config), []) + ["--trainer.logger", "false"], run=False)
    model, dm = made.model, made.datamodule
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    if args.decoder:
        other = torch.load(args.decoder, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict({k: v for k, v in other.items() if k.startswith(("encoder.", "decoder."))}, strict=False)
    dm.setup("fit")
    dm.load_state_dict(checkpoint[type(dm).__qualname__])
    replay, generator = dm.rl, torch.Generator().manual_seed(0)
    tasks = (replay.written > 0).nonzero().flatten()
    if not len(tasks):
        raise SystemExit("the checkpoint's replay has no online rows")
    online = replay.online_rows()[tasks]
    filled = torch.arange(replay.online_capacity) < replay.written[tasks].clamp(max=replay.online_capacity).unsqueeze(1)
    if online["generated"][filled].any():
        raise SystemExit("these online rows carry the decoder's labels, not true rewards: use an Online Oracle run")
    offline = replay.storage[tasks, : replay.offline_size]
    with torch.no_grad():
        z = sample(*model.encoder.posterior(context_rows(dm, tasks, args.context_size, generator, offline_only=True)))
        rows = {"online": (online, filled), "offline": (offline, torch.ones(offline.batch_size, dtype=torch.bool))}
        for name, (data, mask) in rows.items():
            labels = label_rewards(model.decoder, data, z)
            error = (labels - data["reward"]).squeeze(-1)[mask]
            velocity = data["next", "observation"][..., args.velocity_index][mask]
            print(f"{name:8s} rows {int(mask.sum()):7d}  label RMSE {error.pow(2).mean().sqrt():.3f}  "
                  f"mean label {labels.squeeze(-1)[mask].mean():7.3f}  mean true {data['reward'].squeeze(-1)[mask].mean():7.3f}")
            for low, high in ((-9, -0.5), (-0.5, 0.5), (0.5, 1.5), (1.5, 2.5), (2.5, 9)):
                bin_ = (velocity >= low) & (velocity < high)
                if bin_.sum() >= 20:
                    print(f"   velocity [{low:4.1f}, {high:4.1f}): {int(bin_.sum()):7d} rows, label RMSE {error[bin_].pow(2).mean().sqrt():.3f}, "
                          f"bias {error[bin_].mean():+.3f}")


if __name__ == "__main__":
    main()
