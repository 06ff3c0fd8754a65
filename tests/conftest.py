"""Test-wide settings: the simulator stack renders headless and torch shares the cores
politely (see machine facts: without OMP_WAIT_POLICY=PASSIVE a busy core stalls torch)."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
