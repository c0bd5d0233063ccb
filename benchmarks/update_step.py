"""Time SMAC's update step (the module's own ``training_step``) against a plain reference, in one run.

The reference is written independently of this project (torch only) the way the authors' code
is organised: two separate Q-networks and targets, a Python loop over tasks for the product of
Gaussians, Q(s, a) and Q(s, pi(s)) evaluated again for the actor, one backward per loss. Both run on the same meta-batches, at the same
precision and thread count, after warm-up. The last line printed is JSON:
``{"ms_per_step", "gflop_per_step", "matmul_peak_gflops", "fraction_of_peak", "precision",
"threads", "reference_ms_per_step", "speedup"}``; the FLOPs come from the layer shapes and the
peak from a matmul of the update's shapes at the same precision, measured in the same run.

    python benchmarks/update_step.py                          # paper sizes, float32
    python benchmarks/update_step.py --precision bf16-mixed --threads 1
    python benchmarks/update_step.py --device cuda --compile  # eager against the captured CUDA graph
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from tensordict import TensorDict

from smac_lightning.algos import SMAC, Phase


def meta_batch(tasks, batch, context, obs_dim, act_dim, device="cpu"):
    def rows(n):
        return TensorDict(
            {
                "observation": torch.randn(tasks, n, obs_dim),
                "action": torch.rand(tasks, n, act_dim) * 2 - 1,
                "reward": torch.randn(tasks, n, 1),
                "terminated": torch.zeros(tasks, n, 1, dtype=torch.bool),
                "next": {"observation": torch.randn(tasks, n, obs_dim)},
            },
            batch_size=[tasks, n],
        ).to(device)

    return rows(context), rows(batch)


def plain_mlp(sizes):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


class Reference:
    """SMAC's update written independently, the way the authors' code is organised: torch only (no
    module of this project), two separate Q-networks and targets, a loop over tasks for the product
    of Gaussians, Q(s, a) evaluated again for the actor, three backward passes."""

    def __init__(self, obs_dim, act_dim, latent, hidden, enc_hidden, device="cpu"):
        self.latent = latent
        self.encoder = plain_mlp([obs_dim + act_dim + 1, *enc_hidden, 2 * latent]).to(device)
        self.decoder = plain_mlp([obs_dim + act_dim + latent, 64, 64, 1]).to(device)
        self.policy = plain_mlp([obs_dim + latent, *hidden, 2 * act_dim]).to(device)
        self.q1, self.q2, self.t1, self.t2 = (plain_mlp([obs_dim + act_dim + latent, *hidden, 1]).to(device) for _ in range(4))
        self.opt_enc = torch.optim.Adam([*self.encoder.parameters(), *self.decoder.parameters()], 3e-4)
        self.opt_q = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], 3e-4)
        self.opt_pi = torch.optim.Adam(self.policy.parameters(), 3e-4)

    def policy_sample(self, obs, z):
        """A tanh-Gaussian action and its log-density, and the log-density function of given actions."""
        mean, log_std = self.policy(torch.cat([obs, z], -1)).chunk(2, -1)
        log_std = log_std.clamp(-20, 2)
        normal = torch.distributions.Normal(mean, log_std.exp())

        def log_prob(pre_tanh):
            return (normal.log_prob(pre_tanh) - torch.log(1 - torch.tanh(pre_tanh).pow(2) + 1e-6)).sum(-1, keepdim=True)

        u = normal.rsample()
        return torch.tanh(u), log_prob(u), log_prob

    def update(self, context, rl, self_supervised=True):
        means, variances = [], []
        for t in range(context.batch_size[0]):  # the per-task loop of the original code
            out = self.encoder(torch.cat([context["observation"][t], context["action"][t], context["reward"][t]], -1))
            mu, var = out[:, : self.latent], F.softplus(out[:, self.latent :]).clamp_min(1e-7)
            post_var = 1.0 / (1.0 / var).sum(0)
            means.append(post_var * (mu / var).sum(0))
            variances.append(post_var)
        mean, var = torch.stack(means), torch.stack(variances)
        z = mean + var.sqrt() * torch.randn_like(mean)
        obs, act, nxt, rew = rl["observation"], rl["action"], rl["next", "observation"], rl["reward"]
        zr = z[:, None].expand(*obs.shape[:2], -1)
        kl = 0.5 * (var + mean.pow(2) - 1 - var.log()).sum(-1).mean()
        enc_loss = (self.decoder(torch.cat([obs, act, zr], -1)) - rew).pow(2).mean() + 0.1 * kl  # eq. 3 on the RL rows
        zd = zr.detach()
        sa = torch.cat([obs, act, zd], -1)
        q1, q2 = self.q1(sa), self.q2(sa)
        with torch.no_grad():
            a2, _, _ = self.policy_sample(nxt, zd)
            s2 = torch.cat([nxt, a2, zd], -1)
            target = 5.0 * rew + 0.99 * (~rl["terminated"]).float() * torch.min(self.t1(s2), self.t2(s2))
        q_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        a_new, logp_new, log_prob = self.policy_sample(obs, zd)
        s_new = torch.cat([obs, a_new, zd], -1)
        q_new = torch.min(self.q1(s_new), self.q2(s_new))
        q_data = torch.min(self.q1(sa), self.q2(sa)).detach()  # the duplicated forward
        advantage = ((q_data - q_new.detach()) / 100.0).flatten()
        weights = (torch.softmax(advantage, 0) * advantage.numel()).view_as(q_data)
        logp_data = log_prob(torch.atanh(act.clamp(-0.999999, 0.999999)))
        pi_loss = -(logp_data * weights).mean()
        if self_supervised:
            pi_loss = pi_loss - q_new.mean()
        for optimizer, loss in ((self.opt_enc, enc_loss), (self.opt_pi, pi_loss), (self.opt_q, q_loss)):
            optimizer.zero_grad()  # the actor's backward also fills the critics' gradients: cleared before theirs
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            for net, tgt in ((self.q1, self.t1), (self.q2, self.t2)):
                for p, tp in zip(net.parameters(), tgt.parameters()):
                    tp.mul_(0.995).add_(0.005 * p)


def outside_a_trainer(module):
    """``module.training_step`` runnable without a Trainer: its own plain optimizers and a plain
    backward (without a Trainer it logs nothing)."""
    optimizers = module.configure_optimizers()
    module.optimizers = lambda: optimizers
    module.manual_backward = torch.Tensor.backward
    return module


def autocast(precision: str, cache: bool = True, device: str = "cpu"):
    """The update's precision, to enter per update: autocast's cache of cast weights lives as long as
    its context, so one context around many optimizer steps would reuse stale casts. Lightning's
    bf16-mixed turns the cache off (``cache=False``): its context spans a whole ``training_step``."""
    return torch.autocast(device, dtype=torch.bfloat16, enabled=precision.startswith("bf16"), cache_enabled=cache)


class Ours:
    """The module's own ``training_step``, outside a Trainer."""

    def __init__(self, obs_dim, act_dim, latent, hidden, enc_hidden, compile_losses=False, device="cpu"):
        self.module = SMAC(obs_dim, act_dim, latent, enc_hidden, (64, 64), hidden, hidden, compile_losses=compile_losses).to(device)
        self.module.setup("fit")
        outside_a_trainer(self.module)

    def update(self, context, rl, self_supervised=False):
        self.module.phase = Phase.SELF_SUPERVISED if self_supervised else Phase.OFFLINE
        self.module.training_step(TensorDict({"context": context, "rl": rl}), 0)


def time_updates(impl, batches, updates, self_supervised, precision, device="cpu"):
    def update(context, rl):
        with autocast(precision, device=device):
            impl.update(context, rl, self_supervised)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for context, rl in batches[:5]:  # warm-up
        update(context, rl)
    sync()
    start = time.perf_counter()
    for i in range(updates):
        update(*batches[i % len(batches)])
    sync()
    return (time.perf_counter() - start) / updates * 1000


def matmul_gflops(rows, width, precision, repeats=200, device="cpu"):
    """Peak of this machine for the update's dominant shape: [rows, width] @ [width, width]."""
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float32
    a, b = torch.randn(rows, width, dtype=dtype, device=device), torch.randn(width, width, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(10):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * rows * width * width * repeats / (time.perf_counter() - start) / 1e9


def update_gflop(tasks, batch, context, obs_dim, act_dim, latent, hidden, enc_hidden):
    """Matmul FLOPs of one update (forward + ~2x backward), counting only the MLPs' linear layers."""

    def mlp_flops(rows, dims):
        return sum(2 * rows * a * b for a, b in zip(dims[:-1], dims[1:]))

    n = tasks * batch
    q = mlp_flops(n, [obs_dim + act_dim + latent, *hidden, 1])
    pi = mlp_flops(n, [obs_dim + latent, *hidden, 2 * act_dim])
    enc = mlp_flops(tasks * context, [obs_dim + act_dim + 1, *enc_hidden, 2 * latent])
    dec = mlp_flops(tasks * context, [obs_dim + act_dim + latent, 64, 64, 1])
    forward = 3 * 2 * q + 2 * pi + enc + dec  # twin critics at (s,a), (s,a_pi), targets; policy at s, s'
    backward = 2 * (2 * q + pi + enc + dec)  # weight and input gradients of what is trained
    return (forward + backward) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--obs-dim", type=int, default=20)
    parser.add_argument("--act-dim", type=int, default=6)
    parser.add_argument("--hidden", type=int, nargs="+", default=[300, 300, 300])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--phase", choices=["offline", "self-supervised"], default="offline")
    parser.add_argument("--compile", action="store_true", help="also time the module with compile_losses=True")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: compile_losses captures CUDA graphs")
    args = parser.parse_args()
    device = args.device
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dims = (args.obs_dim, args.act_dim, 5, tuple(args.hidden), (200, 200, 200))
    batches = [meta_batch(args.tasks, args.batch, args.context, args.obs_dim, args.act_dim, device) for _ in range(10)]
    ss = args.phase == "self-supervised"
    print(f"torch {torch.__version__}, {device}, {args.threads} threads, {args.precision}, {args.phase}; meta-batch "
          f"{args.tasks} x {args.batch}, context {args.context}, hidden {args.hidden}, obs {args.obs_dim}, act {args.act_dim}")
    reference = time_updates(Reference(*dims, device=device), batches, args.updates, ss, args.precision, device)
    ours = time_updates(Ours(*dims, compile_losses=False, device=device), batches, args.updates, ss, args.precision, device)
    compiled = None
    if args.compile:
        started = time.perf_counter()
        captured = Ours(*dims, compile_losses=True, device=device)
        time_updates(captured, batches[:1], 1, ss, args.precision, device)  # compiles (and captures) on first use
        print(f"compiling took {time.perf_counter() - started:.0f} s")
        compiled = time_updates(captured, batches, args.updates, ss, args.precision, device)
        print(f"compiled: {compiled:.2f} ms/update (eager {ours:.2f}): x{ours / compiled:.2f}")
    peak = matmul_gflops(args.tasks * args.batch, max(args.hidden), args.precision, device=device)
    flop = update_gflop(args.tasks, args.batch, args.context, *dims)
    print(f"reference {reference:.2f} ms/update, smac_lightning {ours:.2f} ms/update: x{reference / ours:.2f}")
    print(json.dumps({
        "ms_per_step": round(ours, 3),
        "gflop_per_step": round(flop, 3),
        "matmul_peak_gflops": round(peak, 1),
        "fraction_of_peak": round(flop / (ours / 1000) / peak, 3),
        "precision": args.precision,
        "device": device,
        "threads": args.threads,
        "reference_ms_per_step": round(reference, 3),
        "speedup": round(reference / ours, 2),
        **({"compiled_ms_per_step": round(compiled, 3)} if compiled is not None else {}),
    }))

if __name__ == "__main__":
    main()
