"""Checkpoints that a kill or a full disk cannot half-write, and a clear word on one that is broken."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml
from lightning.pytorch.plugins.io import TorchCheckpointIO

from smac_lightning.errors import ConfigError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes ``<name>.partial`` next to the checkpoint, flushes it to disk, then renames it into place:
    a checkpoint path always holds a whole checkpoint (the previous one until the rename)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise
        except Exception as err:
            intact = newest_intact(Path(path).parent, but=Path(path))
            hint = f"the newest intact one there is {intact}" if intact else "no other checkpoint there loads"
            raise ConfigError(f"{path} is not a readable checkpoint ({type(err).__name__}); {hint}") from None


def newest_intact(folder: Path, but: Path | None = None) -> Path | None:
    """The most recently written checkpoint in ``folder`` that loads, other than ``but``."""
    for candidate in sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True):
        if but is not None and candidate.resolve() == but.resolve():
            continue
        try:
            torch.load(candidate, map_location="cpu", weights_only=False)
            return candidate
        except Exception:
            continue
    return None


# Options that moved, and where to: eq. (2)'s variants into ``actor`` (2026-12-08); the decoder's into
# ``decoder`` and the z-sampling that meta-test and collection share into ``z`` (2026-12-07, later);
# three removed (``docs/implementation.md``), which an old checkpoint may hold at their defaults only
MOVED = {
    "awac_beta": "actor.beta", "awac_clip_score": "actor.clip_score", "awac_whiten": "actor.whiten",
    "actor_rows": "actor.rows", "advantage": "actor.advantage", "lambda_pearl": "actor.lambda_pearl",
    "alpha": "actor.alpha", "actor_loss": "actor.loss", "action_clamp": "actor.action_clamp",
    "decoder_hidden": "decoder.hidden", "decoder_rows": "decoder.rows",
    "evaluation.resample_z": "z.resample", "evaluation.exploration_z": "z.exploration",
}
REMOVED = {"value": "policy", "expectile": None, "use_next_obs_in_context": False}


def moved_option(key: str) -> str | None:
    """One line for an option (dotted into its sections) that moved or went, else None."""
    if key in MOVED:
        return f"model.{key} is now model.{MOVED[key]}"
    if key in REMOVED:
        return f"model.{key} was removed (docs/implementation.md says why)"
    return None


def _pop(options: dict, dotted: str):
    *path, last = dotted.split(".")
    for part in path:
        options = options.get(part)
        if not isinstance(options, dict):
            return None, False
    return (options.pop(last), True) if last in options else (None, False)


def upgrade_hparams(hparams: dict) -> dict:
    """A checkpoint's model options under today's names (moved ones nested, removed defaults dropped)."""
    for key, default in REMOVED.items():
        if key in hparams and default is not None and hparams[key] != default:
            raise ConfigError(f"this checkpoint was trained with model.{key}={hparams[key]!r}, which was removed; "
                              f"git history before 2026-12-08 can still resume it")
    upgraded = {key: (dict(value) if isinstance(value, dict) else value) for key, value in hparams.items() if key not in REMOVED}
    for old, new in MOVED.items():
        value, found = _pop(upgraded, old)
        if found:
            section, last = new.split(".")
            kept = upgraded.get(section) if isinstance(upgraded.get(section), dict) else {}
            upgraded[section] = {last: value, **kept}  # where both names are there, the new one's value stands
    return upgraded


# Options that decide the networks' shapes: a checkpoint's weights cannot take others.
SHAPE_OPTIONS = ("obs_dim", "act_dim", "latent_dim", "encoder_hidden", "decoder.hidden", "policy_hidden", "critic_hidden",
                 "true_task_as_z")


def fork(checkpoint: dict, changes: dict[str, str], options: dict | None = None) -> dict:
    """``checkpoint`` with model options changed, so that ``fit --ckpt_path`` continues its state under them.

    ``fit --ckpt_path FILE`` takes the model's options from the file, over the command line and the
    configs (LightningCLI), so another setting has to be written into the file. Each key of ``changes``
    is an option as configs name it, dotted into sections (``self_supervised.rewards``), and its text is
    read as the option's current type (``rewards: true`` stays the choice ``'true'``). An option the
    checkpoint does not hold, one that shapes the networks, or a value of another type is refused;
    ``options``, the model's options as the code has them now (a resolved config's ``init_args``),
    admit one that is newer than the checkpoint, typed by its value there."""
    hparams = checkpoint["hyper_parameters"] = upgrade_hparams(checkpoint["hyper_parameters"])
    for key, text in changes.items():
        *path, last = key.split(".")
        if key in SHAPE_OPTIONS or (path[0] if path else last) in SHAPE_OPTIONS:
            raise ConfigError(f"model.{key} decides the networks' shapes: a checkpoint's weights cannot take another")
        if any(option.startswith(f"{key}.") for option in SHAPE_OPTIONS):  # a whole section, a shape inside it
            raise ConfigError(f"model.{key} holds options that decide the networks' shapes: fork its other options one by one")
        node, known = hparams, options or {}
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"model.{key}: the checkpoint's model options have no {part!r} section")
            node, known = node[part], known.get(part) if isinstance(known.get(part), dict) else {}
        if last not in node and last not in known:
            raise ConfigError(f"model.{key}: the checkpoint's model options have no {last!r} (it has {', '.join(sorted(node))})")
        node[last] = _typed(key, text, node[last] if last in node else known[last])
    return checkpoint


def _typed(key: str, text: str, current: object) -> object:
    if isinstance(current, str) or current is None:
        return text
    value = yaml.safe_load(text)
    kinds = (int, float) if isinstance(current, float) else (type(current),)
    if isinstance(value, bool) != isinstance(current, bool) or not isinstance(value, kinds):
        raise ConfigError(f"model.{key} holds {current!r} ({type(current).__name__}); {text!r} is not one")
    return float(value) if isinstance(current, float) else value
