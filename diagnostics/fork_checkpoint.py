"""A copy of a SMAC checkpoint with some model options changed: continue one run's state under other settings.

    python diagnostics/fork_checkpoint.py CHECKPOINT OUT --set self_supervised.rewards=true [--set KEY=VALUE ...]
    python -m smac_lightning fit --config conf/<family>.yaml <the run's options> --ckpt_path OUT

``fit --ckpt_path FILE`` takes the model's options from the file, over the command line (LightningCLI),
so a checkpoint carries its run's settings onward. Forked at the phase switch (the checkpoint of the
evaluation at ``offline_updates``), the copy starts the self-supervised phase from the very state the
original started it from: the Online Oracle (``self_supervised.rewards=true``) or the phase without
its data (``self_supervised.collect=false``) against SMAC on one offline phase, a paired comparison in
which the offline phase's scatter between seeds cancels. The continued run is a new MLflow run whose
first evaluation comes after the checkpoint's; at the switch it is the original run's.

Keys are the model's options as the config names them (``self_supervised.rewards``, ``lambda_pearl``);
a value is read as the option's type (``0.3``, ``false``, ``online``; ``rewards=true`` is the choice
``'true'``). Only options a checkpoint already holds can be set, and options that decide the networks'
shapes cannot (the state would not load).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

SHAPES = ("latent_dim", "encoder_hidden", "decoder_hidden", "policy_hidden", "critic_hidden", "obs_dim", "act_dim",
          "use_next_obs_in_context", "value", "true_task_as_z")


def fork(checkpoint: dict, changes: dict[str, str]) -> dict:
    """``checkpoint`` with each ``changes`` key (dotted, into ``hyper_parameters``) set to its text, read as
    the option's current value's type; raises ``KeyError`` naming a key the checkpoint does not hold,
    ``ValueError`` for one that shapes the networks or a value of another type."""
    hparams = checkpoint["hyper_parameters"]
    for key, text in changes.items():
        *path, last = key.split(".")
        if (path[0] if path else last) in SHAPES:
            raise ValueError(f"{key} decides the networks' shapes: a checkpoint's weights cannot take another")
        node = hparams
        for part in path:
            if not isinstance(node.get(part), dict):
                raise KeyError(f"{key}: the checkpoint's model options have no {part!r} section")
            node = node[part]
        if last not in node:
            raise KeyError(f"{key}: the checkpoint's model options have no {last!r} (it has {', '.join(sorted(node))})")
        node[last] = typed(key, text, node[last])
    return checkpoint


def typed(key: str, text: str, current: object) -> object:
    """``text`` as a value of ``current``'s type: choices such as ``rewards: true`` stay strings."""
    if isinstance(current, str) or current is None:
        return text
    value = yaml.safe_load(text)
    kinds = (int, float) if isinstance(current, float) else (type(current),)
    if isinstance(value, bool) != isinstance(current, bool) or not isinstance(value, kinds):
        raise ValueError(f"{key} holds {current!r} ({type(current).__name__}); {text!r} is not one")
    return type(current)(value) if isinstance(current, float) else value


def parse_change(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE, got {text!r}")
    return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--set", dest="changes", type=parse_change, action="append", required=True, metavar="KEY=VALUE")
    args = parser.parse_args()
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    try:
        fork(checkpoint, dict(args.changes))
    except (KeyError, ValueError) as err:
        parser.exit(2, f"fork_checkpoint: {err.args[0]}\n")
    if args.out.resolve().parent.name == "checkpoints" and args.out.resolve().parent == args.checkpoint.resolve().parent:
        parser.exit(2, "fork_checkpoint: write the copy outside the run's checkpoints folder (`--ckpt_path last` reads it)\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, args.out)
    changed = ", ".join(f"{key}={value!r}" for key, value in args.changes)
    updates = checkpoint.get("smac", {}).get("updates", "?")
    print(f"{args.out}: {args.checkpoint} at update {updates}, with {changed}")


if __name__ == "__main__":
    main()
