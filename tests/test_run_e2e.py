"""The whole pipeline on the real simulator at the smoke preset: `atm-bench run --suite
libero-goal --preset smoke` with every built-in agent plus the example plug-in (its log, rollout
videos with what each agent thinks, evaluation throughput against a serial loop), then reruns
that skip everything, with the checkpoints and without them, and `atm-bench tables` regenerating the committed-style tables
byte-identically."""

import json
import shutil

import pytest

from atm_bench.bench.results import ResultsStore
from atm_bench.bench.runner import ALL_AGENTS
from atm_bench.cli import main

pytestmark = [pytest.mark.sim, pytest.mark.slow]


def test_smoke_run_resumes_and_tables_regenerate(plugin_site, tmp_path, capsys):
    from atm_bench.bench.video import read_mp4

    out, data = tmp_path / "run", tmp_path / "data"
    args = ["run", "--suite", "libero-goal", "--preset", "smoke", "--out", str(out), "--data-dir", str(data),
            "--agents", ",".join(ALL_AGENTS + ("proprio-ridge",))]
    assert main(args) == 0
    log = capsys.readouterr().out  # stdout is not a terminal here: plain lines, no bar redraws
    assert "\r" not in log and "\x1b" not in log
    assert "[stage] eval/atm/seed0: start (agent atm, seed 0)" in log and "[stage] eval/atm/seed0: done in " in log
    assert log.count("  eval atm seed 0 task ") == 2  # one line per evaluated task
    assert "[stage] data: start" in log and "[stage] stage1_track_model: done in " in log
    assert "evaluation throughput" in log and "| ATM " in log.split("evaluation throughput")[1]
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

    # Rollout videos of each task's first episode show what the agent thinks: ATM its tracks
    # (views at twice their size), UniPi(-Replan) the sub-goal as a third view, the others plain.
    # The views are the evaluation's frames, rendered at the data's size (32 at smoke) as in
    # training, and upscaled to 128 for the videos.
    assert config["eval_rendering"] == {"image_size": 32, "render_quality": "fast"}
    widths = {"atm": (256, 512), "unipi": (128, 384), "unipi-replan": (128, 384)}
    for r in records:
        assert ("video" in r) == (r["init_state"] == 0)
        if "video" in r:
            assert read_mp4(out / r["video"]).shape == (r["steps"] + 1, *widths.get(r["agent"], (128, 256)), 3)

    # Throughput: per agent and seed the vector loop, once per agent the serial loop (20 steps:
    # the smoke horizon), their ratio; in the JSON and in the tables.
    throughput = json.loads((out / "throughput.json").read_text())
    assert throughput["serial_steps"] == 20 and set(throughput["agents"]) == agents
    for name, entry in throughput["agents"].items():
        vector = entry["seeds"]["0"]
        assert vector["env_steps"] == sum(r["steps"] for r in records if r["agent"] == name)
        assert vector["steps_per_second"] > 0 and entry["serial"]["env_steps"] == 20
        assert vector["speedup_vs_serial"] == round(vector["steps_per_second"] / entry["serial"]["steps_per_second"], 3)
    assert "serial steps/s" in (out / "tables" / "throughput.md").read_text()

    timing_before = json.loads((out / "timing.json").read_text())
    assert main(args) == 0  # everything cached: no training again, no new episodes
    assert len(ResultsStore(out / "results.jsonl").records()) == len(records)
    timing_after = json.loads((out / "timing.json").read_text())
    assert {k: v for k, v in timing_after.items() if k.startswith(("train/", "throughput/"))} == \
        {k: v for k, v in timing_before.items() if k.startswith(("train/", "throughput/"))}
    assert json.loads((out / "throughput.json").read_text()) == throughput  # measured once, kept

    # A run directory kept without its checkpoints (as under results/): nothing is trained again.
    for path in [*out.glob("agents/*/seed0/checkpoint"), out / "track_model" / "model.safetensors"]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    capsys.readouterr()
    assert main(args) == 0
    done = capsys.readouterr().out.split("[run] trained and evaluated already: ")[1].splitlines()[0]
    assert {f"{a} seed 0" for a in ALL_AGENTS} <= set(done.split(", "))
    assert len(ResultsStore(out / "results.jsonl").records()) == len(records)
    assert not any(out.glob("agents/*/seed0/checkpoint")) and not (out / "track_model" / "model.safetensors").exists()
    timing_kept = json.loads((out / "timing.json").read_text())
    stages = ("train/", "throughput/", "stage1_")
    assert {k: v for k, v in timing_kept.items() if k.startswith(stages)} == \
        {k: v for k, v in timing_before.items() if k.startswith(stages)}

    assert main(["tables", str(out), "--out", str(tmp_path / "again")]) == 0
    for name in ("success.md", "success.csv", "success.tex", "compute.md", "throughput.md", "timing.md", "success.png"):
        assert (tmp_path / "again" / name).read_bytes() == (out / "tables" / name).read_bytes()
