"""Real-robot environments (shipped as `atm_bench.envs.real`): the paper's UR5 setup.

A 6-DoF arm under joint-position control with a gripper, two RGB cameras, demos teleoperated
with a GELLO-style leader arm. Every hardware package is an optional extra
(`pip install 'atm-bench[real]'`) imported only when that device is opened; the simulated
backend (`SimUR5eArm` + `SimCameraRig`, robosuite's UR5e model in MuJoCo) runs the same code
path without hardware, for tests and dry runs; `SimPandaArm` puts a Franka Panda in the same
scene, whose scripted videos serve the cross-embodiment experiment (`atm_bench/data/robot_sim_videos.py`). Recording demos
lives in `atm_bench/data/robot_recording.py`, closed-loop rollouts in `atm_bench/bench/robot_rollout.py`:
this package is the env layer and imports nothing above the foundations.
"""

from atm_bench.envs.real.arm import Arm, SimArm, SimPandaArm, SimUR5eArm, URArm
from atm_bench.envs.real.safety import SafetyConfig, SafetyViolation

__all__ = ["Arm", "SimArm", "SimPandaArm", "SimUR5eArm", "URArm", "SafetyConfig", "SafetyViolation"]
