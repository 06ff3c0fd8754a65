"""Benchmark machinery: the evaluation loop, the JSONL results store, rollout videos."""
