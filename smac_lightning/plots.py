"""Pictures: a run's curves (returns, success, z-shift KLs against updates), the paper's Fig. 6-7 trajectories,
and a comparison's mean and spread across seeds (Fig. 5)."""

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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, title: str, path: Path) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def run_curves(curves: dict[str, list[tuple[float, float]]], switch: int | None, path: Path, title: str) -> Path:
    """``curves``: metric name -> ``(updates, value)`` points; panels for those present; ``switch`` marked."""
    plt = _pyplot()
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
    return _save(fig, title, path)


SOURCES = (
    ("exploration", "exploration, z ~ p(z)"),
    ("online", "adapted, from own exploration"),
    ("offline", "adapted, from an offline history"),
)


def path_xy(episode, positions) -> np.ndarray:
    """An episode's x-y path, start included: the world positions the env reported (Ant, Humanoid) or
    ``positions`` of its observations (Point Robot)."""
    valid = episode["valid"]
    if "position" in episode.keys():
        return np.concatenate([episode["position"][:1].numpy(), episode["next", "position"][valid].numpy()])
    return positions(np.concatenate([episode["observation"][:1].numpy(), episode["next", "observation"][valid].numpy()]))


def trajectories(moments: dict[str, dict], positions, path: Path, title: str) -> Path:
    """The paper's Fig. 6-7: per evaluation moment (a row: e.g. at the switch, at the end), the held-out
    tasks' exploration trajectories, the adapted ones conditioned on that exploration and the adapted
    ones conditioned on an offline history (a column each), every task in its own colour with its goal
    (a star) or direction (a dashed ray from the origin). Each moment's episodes: ``tasks`` (one row
    per lane, ``runs`` consecutive lanes per task), ``exploration`` ``[lanes, k * horizon]`` (the k
    trajectories end to end), ``online`` and ``offline`` ``[lanes, horizon]``; the first run of each
    task is drawn. ``positions`` maps observations to x-y where episodes carry no ``position``."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(moments), len(SOURCES), figsize=(3.6 * len(SOURCES), 3.6 * len(moments)), squeeze=False)
    for row, (moment, episodes) in zip(axes, moments.items()):
        lanes = range(0, len(episodes["tasks"]), episodes["runs"])  # the first run of each task
        colours = plt.cm.hsv(np.linspace(0, 1, len(lanes), endpoint=False))
        goals = [np.asarray(episodes["tasks"][lane], dtype=float).reshape(-1) for lane in lanes]
        horizon = episodes["online"].batch_size[1]
        for ax, (key, label) in zip(row, SOURCES):
            ax.set_title(f"{moment}: {label}", fontsize=8)
            if key not in episodes:
                continue
            for lane, colour, goal in zip(lanes, colours, goals):
                for episode in episodes[key][lane].split(horizon):  # exploration: its trajectories one by one
                    xy = path_xy(episode, positions)
                    ax.plot(xy[:, 0], xy[:, 1], color=colour, linewidth=1)
                if goal.size == 2:
                    ax.scatter(*goal, marker="*", s=80, color=colour, edgecolor="black", linewidth=0.5, zorder=3)
            reach = max(1.0, *(np.abs(ax.get_xlim())), *(np.abs(ax.get_ylim())))  # rays as long as the paths
            for colour, goal in zip(colours, goals):
                if goal.size == 1:  # a direction
                    ax.plot([0, reach * np.cos(goal[0])], [0, reach * np.sin(goal[0])], color=colour, linestyle="--", linewidth=0.6)
            ax.set_aspect("equal", adjustable="datalim")
    return _save(fig, title, path)


def comparison(panels: dict[str, dict[str, tuple[list, np.ndarray, np.ndarray]]], switch: int, path: Path, title: str) -> Path:
    """``panels``: y-axis label -> method -> ``(updates, mean, std)`` across seeds, a panel each; ``switch`` marked."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    for ax, (label, methods) in zip(axes[0], panels.items()):
        for method, (steps, mean, std) in methods.items():
            ax.plot(steps, mean, label=method)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.axvline(switch, color="grey", linestyle="--", linewidth=1)
        ax.text(switch, ax.get_ylim()[1], " switch", va="top", color="grey", fontsize=8)
        ax.set_xlabel("gradient updates")
        ax.set_ylabel(label)
        ax.legend()
    return _save(fig, title, path)
