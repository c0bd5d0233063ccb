"""A config's training loop against its update alone, in one run: what logging, sampling and progress cost.

Runs ``python -m smac_lightning fit`` on a config (offline phase only, for ``--updates`` updates,
one meta-test at the very end, MLflow into a temporary store) and times the updates between
``--warmup`` and the last one: all-in milliseconds per update, everything Lightning does around
the update included. Then, in the same process on the trained module, times the update alone
(``training_step`` with plain optimizers and no logging) on meta-batches of the same data module,
at the same precision. The last line printed is JSON: ``{"all_in_ms_per_update",
"pure_ms_per_update", "overhead", "precision", "config", ...}``; ``overhead`` is
all-in / pure - 1.

    python benchmarks/end_to_end.py --config conf/point_robot.yaml
    python benchmarks/end_to_end.py --config conf/cheetah_vel.yaml --updates 600 --bar
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from smac_lightning.callbacks import EvaluationLines, UpdatesBar
from smac_lightning.cli import cli


CHUNK = 50  # updates per timed chunk; a figure is the median over chunks (this machine's neighbours come and go)


class UpdateClock(L.Callback):
    """Milliseconds per update in chunks of ``CHUNK`` updates from update ``warmup`` on, each chunk
    from the start of its first update to the end of its last (the final evaluation excluded)."""

    def __init__(self, warmup: int):
        self.warmup, self.mark, self.chunks = warmup, None, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if module.updates == self.warmup:
            self.mark = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.mark is not None and (module.updates - self.warmup) % CHUNK == 0:
            now = time.perf_counter()
            self.chunks.append((now - self.mark) / CHUNK * 1000)
            self.mark = now

    @property
    def ms_per_update(self) -> float:
        return statistics.median(self.chunks)


def pure_ms_per_update(module, dm, precision: str, updates: int) -> float:
    """``training_step`` alone: plain optimizer steps, plain backward, no logging, batches drawn beforehand."""
    optimizers = [opt.optimizer if hasattr(opt, "optimizer") else opt for opt in module.optimizers(use_pl_optimizer=False)]
    module.optimizers = lambda: optimizers
    module.manual_backward = torch.Tensor.backward
    module.log_dict = lambda *args, **kwargs: None
    generator = torch.Generator().manual_seed(0)
    batches = [dm.sample_meta_batch(generator, dm.batch_size) for _ in range(10)]
    bf16 = precision.startswith("bf16")

    def step(batch):  # autocast entered per update, as Lightning does: its cache of cast weights must not outlive an update
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            module.training_step(batch, 0)

    for batch in batches:  # warm-up
        step(batch)
    chunks = []
    for _ in range(max(1, updates // CHUNK)):
        started = time.perf_counter()
        for i in range(CHUNK):
            step(batches[i % len(batches)])
        chunks.append((time.perf_counter() - started) / CHUNK * 1000)
    return statistics.median(chunks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True, help="a config (repeat for overlays)")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--pure-updates", type=int, default=200)
    parser.add_argument("--precision", default=None, help="--trainer.precision (default: the project's choice for this CPU)")
    parser.add_argument("--bar", action="store_true", help="show the terminal progress bar (on stderr) as an interactive user sees it")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args, extra = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as store:
        argv = [*[x for c in args.config for x in ("--config", c)],
                "--model.offline_updates", str(args.updates), "--model.self_supervised.iterations", "0",
                "--trainer.val_check_interval", str(args.updates), "--trainer.default_root_dir", store,
                "--trainer.logger.init_args.tracking_uri", f"sqlite:///{Path(store) / 'mlflow.db'}",
                *(["--trainer.precision", args.precision] if args.precision else []), *extra]
        clock = UpdateClock(args.warmup)
        made = cli(argv, run=False, trainer_defaults={"callbacks": [clock]})
        made._show_progress()  # what ``fit`` shows: one line per evaluation when the output is not a terminal
        if args.bar:  # ... and the bar a terminal shows
            lines = next(c for c in made.trainer.callbacks if isinstance(c, EvaluationLines))
            made.trainer.callbacks[made.trainer.callbacks.index(lines)] = UpdatesBar()
        started = time.perf_counter()
        made.trainer.fit(made.model, datamodule=made.datamodule)
        wall = time.perf_counter() - started
        precision = str(made.trainer.precision)
        pure = pure_ms_per_update(made.model, made.datamodule, precision, args.pure_updates)
    print(f"{len(clock.chunks)} chunks of {CHUNK} updates timed: median {clock.ms_per_update:.2f} ms/update all-in, "
          f"{pure:.2f} ms/update alone ({wall:.0f} s for fit, evaluation included)")
    print(json.dumps({
        "all_in_ms_per_update": round(clock.ms_per_update, 3),
        "pure_ms_per_update": round(pure, 3),
        "overhead": round(clock.ms_per_update / pure - 1, 3),
        "chunks_all_in": [round(c, 2) for c in clock.chunks],
        "precision": precision,
        "config": " + ".join(args.config),
        "updates": args.updates,
        "threads": args.threads,
        "bar": args.bar,
    }))


if __name__ == "__main__":
    main()
