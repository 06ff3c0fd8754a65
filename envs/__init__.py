"""Gymnasium environments of atm-bench (shipped as `atm_bench.envs`).

Importing this package registers the LIBERO suites with Gymnasium, e.g.
`gymnasium.make("atm_bench/LIBERO-Goal-v0", task=3, render_quality="fast", protocol="atm")`.
The simulator itself is imported only when an environment is made.
"""

from atm_bench.envs.libero.registration import register_libero_envs

register_libero_envs()
