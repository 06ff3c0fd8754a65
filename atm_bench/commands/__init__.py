"""Command groups of the `atm-bench` CLI (one module per group)."""
