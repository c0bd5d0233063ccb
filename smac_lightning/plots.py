"""A run's curves as a picture for its MLflow page: returns (and success) and the z-shift KLs against updates."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RETURNS = {
    "eval/test/final_return": "held-out, own exploration",
    "eval/test/final_return_offline_context": "held-out, offline history",
    "eval/train/final_return": "training tasks, own exploration",
}
SUCCESS = {"eval/test/final_success": "held-out", "eval/train/final_success": "training tasks"}
KLS = {
    "diag/kl_offline_paper": "offline, 256 rows (paper)",
    "diag/kl_online_paper": "online, whole history (paper)",
    "diag/kl_offline_matched": "offline, matched count",
    "diag/kl_online_matched": "online, matched count",
}


def run_curves(curves: dict[str, list[tuple[float, float]]], switch: int | None, path: Path, title: str) -> Path:
    """``curves``: metric name -> ``(updates, value)`` points; panels for those present; ``switch`` marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(names, label) for names, label in ((RETURNS, "return"), (SUCCESS, "success"), (KLS, "KL(q(z|h) || p(z))"))
              if any(curves.get(name) for name in names)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (names, label) in zip(axes[0], panels):
        for name, legend in names.items():
            if curves.get(name):
                x, y = zip(*curves[name])
                ax.plot(x, y, marker="o", markersize=3, label=legend)
        if switch is not None:
            ax.axvline(switch, color="grey", linestyle="--", linewidth=1, label="phase switch")
        ax.set_xlabel("updates")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def trajectories(episodes: dict, positions, path: Path, title: str, tasks_shown: int = 4) -> Path:
    """The paper's Fig. 6-7 view: for a few held-out tasks, the adapted trajectory conditioned on the
    agent's own exploration next to the one conditioned on an offline history, goal marked.
    ``episodes``: ``tasks`` (one row per lane, ``runs`` consecutive lanes per task), ``online`` and
    ``offline`` ``[lanes, horizon]`` episodes; ``positions`` maps observations to x-y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = episodes["runs"]
    shown = range(min(tasks_shown, len(episodes["tasks"]) // runs))
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4), squeeze=False)
    for ax, task in zip(axes[0], shown):
        lane = task * runs  # the first run of the task
        for key, color, label in (("online", "tab:blue", "from own exploration"), ("offline", "tab:orange", "from an offline history")):
            if key in episodes:
                episode = episodes[key][lane]
                xy = positions(np.concatenate([episode["observation"][:1].numpy(), episode["next", "observation"][episode["valid"]].numpy()]))
                ax.plot(xy[:, 0], xy[:, 1], color=color, marker=".", markersize=3, label=label)
        goal = np.asarray(episodes["tasks"][lane]).reshape(-1)
        if goal.size == 2:
            ax.scatter(*goal, marker="*", s=150, color="black", label="goal", zorder=3)
        ax.set_aspect("equal")
        ax.set_title(f"held-out task {task}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
