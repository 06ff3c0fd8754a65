"""atm-bench: Any-point Trajectory Modeling (ATM) as a benchmark on LIBERO.

Importing the package is cheap: heavy modules (torch, mujoco, libero) load only where used.
"""

__version__ = "0.1.0"
