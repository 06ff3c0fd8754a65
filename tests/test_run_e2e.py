"""The whole pipeline on the real simulator at the smoke preset: `atm-bench run --suite
libero-goal --preset smoke` with every built-in agent plus the example plug-in, then a rerun
that skips everything, and `atm-bench tables` regenerating the committed-style tables
byte-identically."""

import json

import pytest

from atm_bench.bench.results import ResultsStore
from atm_bench.bench.runner import ALL_AGENTS
from atm_bench.cli import main

pytestmark = [pytest.mark.sim, pytest.mark.slow]


def test_smoke_run_resumes_and_tables_regenerate(plugin_site, tmp_path):
    out, data = tmp_path / "run", tmp_path / "data"
    args = ["run", "--suite", "libero-goal", "--preset", "smoke", "--out", str(out), "--data-dir", str(data),
            "--agents", ",".join(ALL_AGENTS + ("proprio-ridge",))]
    assert main(args) == 0
    records = ResultsStore(out / "results.jsonl").records()
    agents = {r["agent"] for r in records}
    assert agents == set(ALL_AGENTS) | {"proprio-ridge"}
    assert {(r["task"], r["preset"], r["protocol"]) for r in records} == {(0, "smoke", "atm"), (1, "smoke", "atm")}
    config = json.loads((out / "config.json").read_text())
    assert config["split_manifest_hash"] and config["versions"]["mujoco"] == "2.3.7"
    flops = json.loads((out / "flops.json").read_text())
    assert flops["atm"]["paper_convention_macs"] > 0 and set(flops) >= set(ALL_AGENTS)
    success = (out / "tables" / "success.md").read_text()
    assert "proprio-ridge" in success and "| ATM " in success

    timing_before = json.loads((out / "timing.json").read_text())
    assert main(args) == 0  # everything cached: no training again, no new episodes
    assert len(ResultsStore(out / "results.jsonl").records()) == len(records)
    timing_after = json.loads((out / "timing.json").read_text())
    assert {k: v for k, v in timing_after.items() if k.startswith("train/")} == \
        {k: v for k, v in timing_before.items() if k.startswith("train/")}

    assert main(["tables", str(out), "--out", str(tmp_path / "again")]) == 0
    for name in ("success.md", "success.csv", "success.tex", "compute.md", "success.png"):
        assert (tmp_path / "again" / name).read_bytes() == (out / "tables" / name).read_bytes()
