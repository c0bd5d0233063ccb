"""Checkpoints that a kill or a full disk cannot half-write, and a clear word on one that is broken."""

from __future__ import annotations

import os
from pathlib import Path

import torch
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
