"""The paper's baselines on the one agent interface (shipped as `atm_bench.baselines`)."""
