"""The Sawyer Manipulation env: a 7-DoF arm with a parallel gripper at a table, in PyBullet.

Each env owns one headless (DIRECT) PyBullet client. The scene is built when the task is set
and saved; ``reset`` restores that snapshot, so episodes of one task start bit-identically.
"""

from __future__ import annotations

from importlib import resources

import gymnasium as gym
import numpy as np
import pybullet as pb

from smac_lightning.envs.sawyer import scene as S

MAX_STEP = 0.05  # metres of hand displacement per action at |a| = 1
SUBSTEPS = 10  # 240 Hz physics, 24 Hz control
FINGER_OPEN = 0.03
ARM_FORCE = 250.0
HAND_DOWN = pb.getQuaternionFromEuler([np.pi, 0.0, 0.0])  # fingers point at the table, closing along x


def asset(name: str) -> str:
    return str(resources.files("smac_lightning.envs.sawyer") / "assets" / name)


class SawyerEnv(gym.Env):
    """Hand displacement (x, y, z) in [-1, 1] scaled to 5 cm plus a gripper command (> 0 closes).

    Observation: the 13-d state of ``scene.OBS_SLICES``. Reward: 0 when the task's desired
    behaviour is achieved, -1 otherwise (NaN in ``reward_free`` envs, which never compute it).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 24}

    def __init__(self, task=None, horizon: int = 50, reward_free: bool = False, render_mode: str | None = None):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(S.OBS_DIM,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.horizon = horizon
        self.reward_free = reward_free
        self.render_mode = render_mode
        self.client = pb.connect(pb.DIRECT)
        self._snapshot = None
        self.set_task(S.Scene({n: True for n in S.OBJECTS}, 0, 0, 0, 0).to_task() if task is None else task)
        self._t = 0

    # -- scene -------------------------------------------------------------------------------
    def set_task(self, task) -> None:
        task = np.asarray(task, dtype=np.float64).reshape(-1)
        if self._snapshot is not None and np.array_equal(task, self.task):
            return  # built already (a rebuild costs ~30 ms); reset restores the snapshot
        self.task = task
        self.scene = S.Scene.from_task(self.task)
        c = self.client
        pb.resetSimulation(physicsClientId=c)
        pb.setGravity(0, 0, -9.81, physicsClientId=c)
        table = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=[0.45, 0.6, 0.025], physicsClientId=c)
        table_visual = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[0.45, 0.6, 0.025], rgbaColor=[0.85, 0.8, 0.7, 1], physicsClientId=c)
        pb.createMultiBody(0, table, table_visual, basePosition=[0.65, 0.0, -0.025], physicsClientId=c)
        self.robot = pb.loadURDF(asset("sawyer.urdf"), [0, 0, 0], useFixedBase=True, physicsClientId=c)
        joints = {pb.getJointInfo(self.robot, j, physicsClientId=c)[1].decode(): j for j in range(pb.getNumJoints(self.robot, physicsClientId=c))}
        self.arm = [joints[f"right_j{i}"] for i in range(7)]
        self.fingers = [joints["left_finger"], joints["right_finger"]]
        self.ee = joints["end_effector"]
        info = [pb.getJointInfo(self.robot, j, physicsClientId=c) for j in self.arm]
        self._lower, self._upper = [i[8] for i in info], [i[9] for i in info]
        self._ranges = [u - lo for lo, u in zip(self._lower, self._upper)]
        self._rest = [0.0, -0.6, 0.0, 1.6, 0.0, 0.6, 0.0]
        present, sc = self.scene.present, self.scene
        self.bodies = {}
        cabinet = [S.CABINET_FRONT_X, sc.cabinet_y, 0.0]
        if present["button_drawer"]:
            self.bodies["button_drawer"] = self._fixed("drawer_button.urdf", cabinet)
        if present["handle_drawer"]:
            self.bodies["handle_drawer"] = self._fixed("drawer_handle.urdf", [cabinet[0], cabinet[1], S.TOP_DRAWER_Z])
        if present["button"]:
            self.bodies["button"] = self._fixed("button.urdf", sc.button)
        if present["tray"]:
            self.bodies["tray"] = self._fixed("tray.urdf", sc.tray)
        if present["object"]:
            self.bodies["object"] = pb.loadURDF(asset("object.urdf"), sc.object_start, physicsClientId=c)
        self._home_arm()
        self._grasp = None
        self._latched = False
        self._hold_objects()
        self._snapshot = pb.saveState(physicsClientId=c)

    def _fixed(self, name: str, position) -> int:
        return pb.loadURDF(asset(name), list(position), useFixedBase=True, physicsClientId=self.client)

    def _home_arm(self) -> None:
        for j, q in zip(self.arm, self._rest):
            pb.resetJointState(self.robot, j, q, physicsClientId=self.client)
        for _ in range(3):  # IK from the rest pose converges in a few refinements
            q = self._ik(self.scene.hand_start)
            for j, qj in zip(self.arm, q):
                pb.resetJointState(self.robot, j, qj, physicsClientId=self.client)
        for j in self.fingers:
            pb.resetJointState(self.robot, j, FINGER_OPEN, physicsClientId=self.client)
        self._drive(q, close=False)

    def _ik(self, target) -> list[float]:
        q = pb.calculateInverseKinematics(
            self.robot, self.ee, list(target), HAND_DOWN, self._lower, self._upper, self._ranges, self._rest,
            maxNumIterations=30, residualThreshold=1e-4, physicsClientId=self.client,
        )
        return list(q[:7])

    def _drive(self, q, close: bool) -> None:
        c = self.client
        pb.setJointMotorControlArray(self.robot, self.arm, pb.POSITION_CONTROL, targetPositions=q, forces=[ARM_FORCE] * 7, physicsClientId=c)
        target = 0.0 if close else FINGER_OPEN
        pb.setJointMotorControlArray(self.robot, self.fingers, pb.POSITION_CONTROL, targetPositions=[target] * 2, forces=[15.0] * 2, physicsClientId=c)

    def _hold_objects(self) -> None:
        """Drawers held by friction (a zero-velocity motor of small force), the button by a weak spring."""
        c = self.client
        for name in ("handle_drawer", "button_drawer"):
            if name in self.bodies:
                pb.setJointMotorControl2(self.bodies[name], 0, pb.VELOCITY_CONTROL, targetVelocity=0.0, force=3.0, physicsClientId=c)
        if "button" in self.bodies:
            pb.setJointMotorControl2(self.bodies["button"], 0, pb.POSITION_CONTROL, targetPosition=0.0, force=4.0, physicsClientId=c)

    def _joint(self, name: str) -> float:
        body = self.bodies.get(name)
        return 0.0 if body is None else pb.getJointState(body, 0, physicsClientId=self.client)[0]

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        if self._grasp is not None:  # constraints are not part of the saved state
            pb.removeConstraint(self._grasp, physicsClientId=self.client)
            self._grasp = None
        pb.restoreState(self._snapshot, physicsClientId=self.client)
        self._latched = False
        self._hold_objects()
        self._drive(self._ik(self.scene.hand_start), close=False)
        self._t = 0
        return self._observation(), {}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        hand = self._hand()
        target = np.clip(hand + MAX_STEP * a[:3], S.WORKSPACE[0], S.WORKSPACE[1])
        close = bool(a[3] > 0)
        self._drive(self._ik(target), close)
        for _ in range(SUBSTEPS):
            pb.stepSimulation(physicsClientId=self.client)
        self._update_mechanisms()
        self._update_grasp(close)
        self._t += 1
        observation = self._observation()
        reward = float("nan") if self.reward_free else float(S.sparse_reward(observation, self.task))
        return observation, reward, False, self._t >= self.horizon, {}

    def _update_mechanisms(self) -> None:
        """The button latches down once pressed, and then drives the button drawer open."""
        if self._latched or self._joint("button") <= S.PRESSED:
            return
        self._latched = True
        c = self.client
        pb.setJointMotorControl2(self.bodies["button"], 0, pb.POSITION_CONTROL, targetPosition=0.022, force=50.0, physicsClientId=c)
        if "button_drawer" in self.bodies:
            pb.setJointMotorControl2(
                self.bodies["button_drawer"], 0, pb.POSITION_CONTROL, targetPosition=S.DRAWER_TRAVEL, force=20.0, maxVelocity=0.4, physicsClientId=c
            )

    def _update_grasp(self, close: bool) -> None:
        """A closed gripper touching the object with both fingers holds it rigidly.

        Friction grasps of a light cube in PyBullet slip at these control rates; a fixed
        constraint while both fingers touch it is the usual simplification.
        """
        c, obj = self.client, self.bodies.get("object")
        if obj is None:
            return
        if not close:
            if self._grasp is not None:
                pb.removeConstraint(self._grasp, physicsClientId=c)
                self._grasp = None
            return
        if self._grasp is not None:
            return
        touching = [pb.getContactPoints(self.robot, obj, linkIndexA=f, physicsClientId=c) for f in self.fingers]
        if all(touching):
            hand_pos, hand_orn = pb.getLinkState(self.robot, self.ee, computeForwardKinematics=True, physicsClientId=c)[4:6]
            obj_pos, obj_orn = pb.getBasePositionAndOrientation(obj, physicsClientId=c)
            inv_pos, inv_orn = pb.invertTransform(hand_pos, hand_orn)
            rel_pos, rel_orn = pb.multiplyTransforms(inv_pos, inv_orn, obj_pos, obj_orn)
            self._grasp = pb.createConstraint(
                self.robot, self.ee, obj, -1, pb.JOINT_FIXED, [0, 0, 0], rel_pos, [0, 0, 0], rel_orn, physicsClientId=c
            )

    def _hand(self) -> np.ndarray:
        return np.array(pb.getLinkState(self.robot, self.ee, computeForwardKinematics=True, physicsClientId=self.client)[4])

    def _observation(self) -> np.ndarray:
        c = self.client
        obs = np.zeros(S.OBS_DIM)
        obs[S.OBS_SLICES["hand"]] = self._hand()
        obs[S.OBS_SLICES["gap"]] = sum(pb.getJointState(self.robot, f, physicsClientId=c)[0] for f in self.fingers)
        if "object" in self.bodies:
            obs[S.OBS_SLICES["object"]] = pb.getBasePositionAndOrientation(self.bodies["object"], physicsClientId=c)[0]
        if "tray" in self.bodies:
            obs[S.OBS_SLICES["tray"]] = self.scene.tray
        obs[S.OBS_SLICES["button_drawer"]] = self._joint("button_drawer")
        obs[S.OBS_SLICES["handle_drawer"]] = self._joint("handle_drawer")
        obs[S.OBS_SLICES["button"]] = self._joint("button")
        return obs.astype(np.float32)

    def render(self):
        return render_scene(self.client, width=320, height=240)

    def close(self) -> None:
        if self.client is not None and pb.isConnected(self.client):
            pb.disconnect(self.client)
        self.client = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: pybullet may already be gone
            pass


def render_scene(client: int, width: int = 320, height: int = 240) -> np.ndarray:
    """An RGB image of the table from its far side, facing the robot, by PyBullet's headless TinyRenderer."""
    view = pb.computeViewMatrixFromYawPitchRoll([0.6, 0.0, 0.05], 1.1, yaw=90, pitch=-40, roll=0, upAxisIndex=2, physicsClientId=client)
    projection = pb.computeProjectionMatrixFOV(55, width / height, 0.05, 5.0, physicsClientId=client)
    image = pb.getCameraImage(width, height, view, projection, renderer=pb.ER_TINY_RENDERER, physicsClientId=client)[2]
    return np.asarray(image, np.uint8).reshape(height, width, 4)[..., :3]
