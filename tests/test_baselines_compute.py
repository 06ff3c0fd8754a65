"""The compute table (counted MACs per 600-step task for ATM and every baseline) and the
`atm-bench baselines` commands (train one baseline from a split; print the compute table)."""

import json

import pytest

from atm_bench.cli import main

from atm_synthetic import write_task_file


def test_compute_table_rows_follow_the_counted_models():
    import torch

    from atm_bench.atm.policy import TrackGuidedPolicy
    from atm_bench.atm.track_transformer import TrackTransformer
    from atm_bench.baselines.compute import STEPS, markdown, measure, ratios
    from atm_bench.atm.step_cost import measure_atm_step
    from atm_bench.atm.stages import policy_config
    from atm_bench.presets import get_preset

    torch.set_num_threads(1)
    rows = measure("smoke", text_dim=6)
    by = {r["method"]: r for r in rows}
    assert list(by) == ["ATM", "BC", "R3M-finetune", "VPT", "UniPi", "UniPi-Replan"]
    preset = get_preset("smoke").with_text_dim(6)
    track = TrackTransformer(preset.track_model)
    atm = measure_atm_step(track, TrackGuidedPolicy(preset.policy))
    bc = measure_atm_step(track, TrackGuidedPolicy(policy_config(preset, True, 6)))  # BC: no track inputs
    assert by["ATM"]["paper_convention_tmac_per_task"] == pytest.approx(atm.track_model_macs * STEPS / 1e12)
    assert by["ATM"]["full_tmac_per_task"] == pytest.approx(atm.full_macs * STEPS / 1e12)
    assert by["BC"]["full_tmac_per_task"] == by["VPT"]["full_tmac_per_task"] == pytest.approx(bc.full_macs * STEPS / 1e12)
    assert by["R3M-finetune"]["full_tmac_per_task"] > by["BC"]["paper_convention_tmac_per_task"] == 0
    assert by["UniPi-Replan"]["paper_convention_tmac_per_task"] > 10 * by["UniPi"]["paper_convention_tmac_per_task"] > 0
    q = ratios(rows)
    assert q["unipi_over_atm_paper_convention"] == pytest.approx(
        by["UniPi"]["paper_convention_tmac_per_task"] / by["ATM"]["paper_convention_tmac_per_task"])
    text = markdown(rows, "smoke")
    assert "| UniPi-Replan |" in text and "UniPi / ATM:" in text and "the paper: 75.0x" in text


def test_paper_preset_ratios_match_the_papers_table_iv():
    """Counted at the paper preset (meta device, ~15 s): UniPi / ATM and UniPi-Replan / UniPi within
    20 % of the paper's 25.2x and 75.0x (the space-time video UNet at 64 x 64; one full
    generation per replan)."""
    from atm_bench.baselines.compute import PAPER_T, measure, ratios

    q = ratios(measure("paper"))
    assert q["unipi_over_atm_paper_convention"] == pytest.approx(PAPER_T["UniPi"] / PAPER_T["ATM"], rel=0.2)
    assert q["replan_over_unipi_paper_convention"] == pytest.approx(PAPER_T["UniPi-Replan"] / PAPER_T["UniPi"], rel=0.2)


def test_baselines_cli_trains_and_fails_clearly(tmp_path, monkeypatch, capsys):
    from atm_bench.envs.libero.suites import list_tasks

    monkeypatch.setenv("ATM_BENCH_CACHE", str(tmp_path / "cache"))
    task = list_tasks("libero_goal")[0]
    write_task_file(tmp_path / "data" / "libero_goal" / f"{task.name}_demo.hdf5", demos=10, length=8,
                    instruction=task.instruction)
    common = ["--suite", "libero-goal", "--preset", "smoke", "--tasks", "0", "--data-dir", str(tmp_path / "data"),
              "--epochs", "1"]
    assert main(["baselines", "train", "--agent", "vpt", *common, "--out", str(tmp_path / "vpt")]) == 0
    out = capsys.readouterr().out
    assert "IDM on held-out demos: action MSE" in out and "wrote" in out
    agent = json.loads((tmp_path / "vpt" / "checkpoint" / "agent.json").read_text())
    assert agent["name"] == "vpt" and agent["idm_report"]["held_out"]["steps"] > 0

    assert main(["baselines", "train", "--agent", "vpt", *common, "--r3m-weights", "x.pt"]) == 2
    assert "only applies to --agent r3m" in capsys.readouterr().err
    assert main(["baselines", "train", "--agent", "r3m", *common, "--r3m-weights", str(tmp_path / "none.pt"),
                 "--out", str(tmp_path / "r3m")]) == 2
    assert "R3M checkpoint not found" in capsys.readouterr().err


def test_baselines_compute_command(capsys):
    assert main(["baselines", "compute", "--preset", "smoke", "--text-dim", "6"]) == 0
    out = capsys.readouterr().out
    assert "| ATM |" in out and "UniPi-Replan / UniPi:" in out
