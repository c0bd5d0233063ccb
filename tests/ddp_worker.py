"""Run by test_ddp.py as a script: Lightning's DDP launcher starts the second rank by re-running it."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import smoke_cli  # noqa: E402

out = Path(sys.argv[1])
made = smoke_cli(out, "--trainer.strategy", "ddp", "--trainer.devices", "2",
                 "--trainer.accelerator", "cpu", *sys.argv[2:])
made.trainer.fit(made.model, made.datamodule)
module, dm = made.model, made.datamodule
torch.save(
    {
        "policy": module.policy.state_dict(),
        "critic": module.critic.state_dict(),
        "encoder": module.encoder.state_dict(),
        "online_rl": dm.rl.online_rows().to_dict(),
        "online_transitions": module.online_transitions,
        "updates": module.updates,
        "metrics": {k: float(v) for k, v in made.trainer.callback_metrics.items()},
    },
    out / f"rank{made.trainer.global_rank}.pt",
)
