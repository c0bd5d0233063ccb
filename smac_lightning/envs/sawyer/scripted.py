"""The scripted controller that generates Sawyer's offline data.

It does not know the desired behaviour: each time it finishes one, it starts another drawn
uniformly from every behaviour the scene's objects allow (all eight kinds, whichever set the
family rewards), so most of the data is spent on unrewarded behaviours. Move hand never finishes:
once drawn, the hand stays at its goal until the trajectory ends, as the authors' controller
does. Each behaviour is a list of waypoints for the hand, with a gripper command and a number of
steps to dwell there; a waypoint not reached in ``patience`` steps is skipped. Gaussian noise is
added to all four action components, then the action is clipped to [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from smac_lightning.envs.sawyer import scene as S
from smac_lightning.envs.sawyer.env import MAX_STEP

ABOVE = 0.10  # approach height above a grasp or press point
OPEN, CLOSE = -1.0, 1.0


@dataclass
class Waypoint:
    position: np.ndarray
    gripper: float
    dwell: int = 0  # steps to stay once reached (to let the gripper move)
    hold: bool = False  # stay until the trajectory ends


def behaviour_script(name: str, scene: S.Scene, observation: np.ndarray) -> list[Waypoint]:
    """Waypoints that perform ``name`` in ``scene``, from the current ``observation``."""
    def at(p, dz=0.0):
        return np.array([p[0], p[1], p[2] + dz])

    if name == "move_hand":
        return [Waypoint(S.HAND_GOAL, OPEN, hold=True)]
    if name == "open_top_drawer":
        h = scene.handle
        pulled = h + np.array([-S.DRAWER_TRAVEL + 0.01, 0.0, 0.0])
        return [Waypoint(at(h, ABOVE), OPEN), Waypoint(h, OPEN), Waypoint(h, CLOSE, 2), Waypoint(pulled, CLOSE), Waypoint(pulled, OPEN, 1), Waypoint(at(pulled, ABOVE), OPEN)]
    if name in ("open_bottom_drawer", "push_button"):
        b = scene.button
        return [Waypoint(at(b, 0.14), CLOSE), Waypoint(at(b, 0.015), CLOSE, 1), Waypoint(at(b, 0.14), CLOSE)]
    if name == "open_both_drawers":
        return behaviour_script("open_top_drawer", scene, observation) + behaviour_script("push_button", scene, observation)
    # The object behaviours start with a grasp where the object is now.
    o = observation[S.OBS_SLICES["object"]].astype(np.float64)
    grasp = [Waypoint(at(o, ABOVE), OPEN), Waypoint(at(o, 0.005), OPEN), Waypoint(at(o, 0.005), CLOSE, 2)]
    if name == "grasp_object":
        return grasp + [Waypoint(at(o, 0.03), CLOSE, 2), Waypoint(at(o, 0.005), OPEN, 1), Waypoint(at(o, ABOVE), OPEN)]
    if name == "lift_object":
        return grasp + [Waypoint(at(o, 0.14), CLOSE, 2), Waypoint(at(o, 0.01), CLOSE), Waypoint(at(o, 0.01), OPEN, 1), Waypoint(at(o, ABOVE), OPEN)]
    if name == "object_in_tray":
        t = scene.tray
        return grasp + [Waypoint(at(o, 0.14), CLOSE), Waypoint(at(t, 0.14), CLOSE), Waypoint(at(t, 0.06), CLOSE), Waypoint(at(t, 0.06), OPEN, 1), Waypoint(at(t, 0.14), OPEN)]
    raise ValueError(f"unknown Sawyer behaviour {name!r}")


@dataclass
class _Plan:
    scene: S.Scene
    waypoints: list[Waypoint] = field(default_factory=list)
    steps_on_waypoint: int = 0
    dwelt: int = 0
    budget: int | None = None  # steps allowed on the current waypoint, set when it becomes current


class ScriptedSawyer:
    """Batched behaviour policy (``reset(tasks)``, ``act(observations)``) for ``data.generate``.

    Args:
        rng: its random stream.
        num_behaviours: the behaviours (the first 3 or all 8 of ``BEHAVIOURS``) the controller draws from.
        noise: std of the Gaussian noise added to every action component.
        patience: spare steps, beyond the distance at full speed, before an unreached waypoint is skipped.
        tolerance: distance (m) at which a waypoint counts as reached.
    """

    def __init__(self, rng: np.random.Generator, num_behaviours: int = len(S.BEHAVIOURS), noise: float = 0.1, patience: int = 6, tolerance: float = 0.015):
        self.rng = rng
        self.num_behaviours = num_behaviours
        self.noise = noise
        self.patience = patience
        self.tolerance = tolerance
        self._plans: list[_Plan] = []

    def reset(self, tasks: np.ndarray) -> None:
        self._plans = [_Plan(S.Scene.from_task(task)) for task in tasks]

    def act(self, observation: np.ndarray) -> np.ndarray:
        return np.stack([self._act_one(plan, obs) for plan, obs in zip(self._plans, observation)]).astype(np.float32)

    def _act_one(self, plan: _Plan, obs: np.ndarray) -> np.ndarray:
        hand = obs[S.OBS_SLICES["hand"]]
        while True:
            if not plan.waypoints:
                options = S.feasible(plan.scene.present, self.num_behaviours)
                name = S.BEHAVIOURS[int(self.rng.choice(options))]
                plan.waypoints = behaviour_script(name, plan.scene, obs)
                plan.steps_on_waypoint = plan.dwelt = 0
            wp = plan.waypoints[0]
            distance = np.linalg.norm(wp.position - hand)
            if plan.budget is None:
                plan.budget = self.patience + wp.dwell + int(np.ceil(distance / MAX_STEP))
            reached = distance < self.tolerance
            if not wp.hold and (reached and plan.dwelt >= wp.dwell or plan.steps_on_waypoint >= plan.budget):
                plan.waypoints.pop(0)
                plan.steps_on_waypoint = plan.dwelt = 0
                plan.budget = None
                continue
            plan.steps_on_waypoint += 1
            plan.dwelt += int(reached)
            action = np.append(np.clip((wp.position - hand) / MAX_STEP, -1.0, 1.0), wp.gripper)
            return np.clip(action + self.noise * self.rng.standard_normal(4), -1.0, 1.0)
