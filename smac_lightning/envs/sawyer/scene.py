"""Sawyer Manipulation scenes: which objects stand where, the desired behaviour, and its success test.

Everything here is plain numpy, so the reward can be recomputed from observations alone.
World frame: the robot's base at the origin, x away from the robot, z up, table top at z = 0.

A task is a row of ``TASK_DIM`` floats (see ``Scene``): five presence flags, the drawers' side,
the tray's and the object's slots, and the desired behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Desired behaviours. The paper's family uses the first three; ``behaviours=8`` adds the rest
# (appendix B's harder variant).
BEHAVIOURS = (
    "move_hand",
    "open_top_drawer",  # by its handle
    "open_bottom_drawer",  # by pressing the button, which drives it open
    "push_button",
    "grasp_object",
    "lift_object",
    "object_in_tray",
    "open_both_drawers",
)
OBJECTS = ("handle_drawer", "button_drawer", "button", "tray", "object")
OBJECT_PROBABILITY = 0.75  # each object stands in a scene with this probability (the authors' environment)
# Task row: presence flags, then side, tray slot, object slot, behaviour.
SIDE, TRAY_SLOT, OBJECT_SLOT, BEHAVIOUR = range(len(OBJECTS), len(OBJECTS) + 4)
TASK_DIM = BEHAVIOUR + 1
# The objects each behaviour needs.
NEEDS = {
    "move_hand": (),
    "open_top_drawer": ("handle_drawer",),
    "open_bottom_drawer": ("button_drawer", "button"),
    "push_button": ("button",),
    "grasp_object": ("object",),
    "lift_object": ("object",),
    "object_in_tray": ("object", "tray"),
    "open_both_drawers": ("handle_drawer", "button_drawer", "button"),
}

# Layout (metres). The drawer cabinet stands on the left (+y) or the right (-y) with its drawers
# facing the robot; the button stands on the other side; tray and object have four slots each.
CABINET_FRONT_X = 0.70
CABINET_Y = (0.25, -0.25)  # by side
TOP_DRAWER_Z = 0.09  # the handle drawer sits on top of the button drawer's housing
HANDLE_OFFSET = np.array([-0.05, 0.0, 0.04])  # handle bar, from the handle drawer's frame
BUTTON_X = 0.50
TRAY_SLOTS = np.array([[0.70, -0.07], [0.70, 0.07], [0.56, -0.07], [0.56, 0.07]])
OBJECT_SLOTS = np.array([[0.44, -0.15], [0.44, -0.05], [0.44, 0.05], [0.44, 0.15]])
OBJECT_HALF = 0.02
WORKSPACE = np.array([[0.38, -0.32, 0.015], [0.80, 0.32, 0.30]])  # the hand is clipped to this box
# Move hand's goal, one point in every scene as in the authors' environment: above the middle of the
# workspace, 1 cm below its ceiling.
HAND_GOAL = np.array([WORKSPACE[:, 0].mean(), WORKSPACE[:, 1].mean(), WORKSPACE[1, 2] - 0.01])
# The hand starts 0.15 m off the middle on the side away from the drawers, as the authors' does, so
# the first observation tells where the drawers stand (``Scene.hand_start`` gives y its sign).
HAND_START = np.array([0.55, 0.15, 0.20])
DRAWER_TRAVEL = 0.14

# Success thresholds.
OPEN = 0.08  # drawer opening (m)
PRESSED = 0.015  # button depression (m); the button latches there
HAND_REACHED = 0.08  # the authors' radius
LIFTED = 0.10  # object centre above the table
TRAY_INNER = 0.055

# Observation layout (13): hand position, finger gap, object position, tray position (the
# "second small object"), button-drawer opening, handle-drawer opening, button depression.
# An absent object reads 0 in its slots.
OBS_SLICES = {
    "hand": slice(0, 3),
    "gap": slice(3, 4),
    "object": slice(4, 7),
    "tray": slice(7, 10),
    "button_drawer": slice(10, 11),
    "handle_drawer": slice(11, 12),
    "button": slice(12, 13),
}
OBS_DIM = 13


@dataclass(frozen=True)
class Scene:
    present: dict[str, bool]
    side: int
    tray_slot: int
    object_slot: int
    behaviour: int

    @classmethod
    def from_task(cls, task) -> "Scene":
        t = np.asarray(task, dtype=np.float64).reshape(-1)
        if t.size != TASK_DIM:
            raise ValueError(f"Sawyer tasks have {TASK_DIM} entries, got {t.size}")
        flags = {name: bool(round(v)) for name, v in zip(OBJECTS, t[: len(OBJECTS)])}
        side, tray, obj, behaviour = (int(round(v)) for v in t[SIDE:])
        return cls(flags, side, tray, obj, behaviour)

    def to_task(self) -> np.ndarray:
        flags = [float(self.present[name]) for name in OBJECTS]
        return np.array(flags + [self.side, self.tray_slot, self.object_slot, self.behaviour], float)

    # Where things are, for the env and the scripted controller.
    @property
    def cabinet_y(self) -> float:
        return CABINET_Y[self.side]

    @property
    def hand_start(self) -> np.ndarray:
        return HAND_START * np.array([1.0, -np.sign(self.cabinet_y), 1.0])

    @property
    def handle(self) -> np.ndarray:
        return np.array([CABINET_FRONT_X, self.cabinet_y, TOP_DRAWER_Z]) + HANDLE_OFFSET

    @property
    def button(self) -> np.ndarray:
        return np.array([BUTTON_X, -self.cabinet_y, 0.0])

    @property
    def tray(self) -> np.ndarray:
        return np.array([*TRAY_SLOTS[self.tray_slot], 0.0])

    @property
    def object_start(self) -> np.ndarray:
        return np.array([*OBJECT_SLOTS[self.object_slot], OBJECT_HALF])


def feasible(present: dict[str, bool], num_behaviours: int) -> list[int]:
    """Behaviours (indices into ``BEHAVIOURS``) that the objects present make possible."""
    return [i for i, name in enumerate(BEHAVIOURS[:num_behaviours]) if all(present[o] for o in NEEDS[name])]


def slot_choices(present: dict[str, bool], side: int) -> tuple[list[int], list[int]]:
    """The tray's and the object's allowed slots, by the authors' rules: with either drawer in the
    scene the object stands at the outer slot on the side away from the drawers; with the button
    drawer the tray stands on that side too. So in a drawer scene the state tells the drawers' side
    at every step, not only at the hand's start."""
    away = -np.sign(CABINET_Y[side])
    tray = list(range(len(TRAY_SLOTS)))
    obj = list(range(len(OBJECT_SLOTS)))
    if present["button_drawer"]:
        tray = [i for i in tray if np.sign(TRAY_SLOTS[i, 1]) == away]
    if present["button_drawer"] or present["handle_drawer"]:
        obj = [int(np.argmax(OBJECT_SLOTS[:, 1] * away))]
    return tray, obj


def sample_scenes(n: int, seed: int, num_behaviours: int = 3, object_probability: float = OBJECT_PROBABILITY) -> np.ndarray:
    """``n`` task rows: each object present with probability ``object_probability``; drawer side
    uniform; tray and object slots uniform among ``slot_choices``; then the desired behaviour
    uniform among the feasible ones. The draws are version 3's, so a seed gives the scenes it gave
    then, with only the slots moved."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        present = {name: bool(rng.random() < object_probability) for name in OBJECTS}
        behaviour = int(rng.choice(feasible(present, num_behaviours)))
        side, tray, obj = (int(rng.integers(k)) for k in (2, len(TRAY_SLOTS), len(OBJECT_SLOTS)))
        trays, objs = slot_choices(present, side)
        rows.append(Scene(present, side, trays[tray % len(trays)], objs[obj % len(objs)], behaviour).to_task())
    return np.stack(rows)


def behaviour_index(task: np.ndarray) -> np.ndarray:
    """The desired behaviour (an index into ``BEHAVIOURS``) of each task row ``[..., TASK_DIM]``."""
    return np.rint(np.asarray(task)[..., BEHAVIOUR]).astype(int)


def achieved(observation: np.ndarray, task: np.ndarray) -> np.ndarray:
    """Whether each observation (``[..., 13]``) satisfies its task's desired behaviour (``[..., TASK_DIM]``)."""
    obs, task = np.asarray(observation, np.float64), np.asarray(task, np.float64)
    part = {name: obs[..., s] for name, s in OBS_SLICES.items()}
    behaviour = behaviour_index(task)
    obj, tray = part["object"], part["tray"]
    top = part["handle_drawer"][..., 0] > OPEN
    bottom = part["button_drawer"][..., 0] > OPEN
    held = (obj[..., 2] > OBJECT_HALF + 0.01) & (part["gap"][..., 0] < 0.05) & (np.linalg.norm(obj - part["hand"], axis=-1) < 0.04)
    has = {name: task[..., OBJECTS.index(name)] > 0.5 for name in ("tray", "object")}
    in_tray = (np.abs(obj[..., :2] - tray[..., :2]).max(-1) < TRAY_INNER) & (obj[..., 2] < 0.05) & has["tray"]
    tests = [
        np.linalg.norm(part["hand"] - HAND_GOAL, axis=-1) < HAND_REACHED,
        top,
        bottom,
        part["button"][..., 0] > PRESSED,
        held,
        obj[..., 2] > LIFTED,
        in_tray & has["object"],
        top & bottom,
    ]
    return np.choose(behaviour, tests)


def sparse_reward(observation: np.ndarray, task: np.ndarray) -> np.ndarray:
    """0 where the desired behaviour is achieved, -1 elsewhere."""
    return achieved(observation, task).astype(np.float64) - 1.0
