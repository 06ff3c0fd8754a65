"""BC, the paper's first baseline, is `BCAgent` (atm_bench.atm.agent): checks that it is what the
paper describes: ATM's policy network, tracks zeroed, the instruction entering both transformers,
trained on the action-labelled demos only."""

import dataclasses
import json

import torch

from atm_bench.agents.base import Budget, TrainingData, get_agent

from baselines_data import synthetic_split, use_cache


def _policies():
    from atm_bench.atm.policy import TrackGuidedPolicy
    from atm_bench.atm.stages import policy_config
    from atm_bench.presets import get_preset

    preset = get_preset("smoke")
    torch.manual_seed(0)
    atm = TrackGuidedPolicy(dataclasses.replace(preset.policy, text_dim=6)).eval()
    return atm, TrackGuidedPolicy(policy_config(preset, True, 6)).eval()


def test_bc_is_atms_network_without_track_inputs_plus_the_instruction():
    atm, bc = _policies()
    atm_shapes = {k: v.shape for k, v in atm.state_dict().items()}
    bc_shapes = {k: v.shape for k, v in bc.state_dict().items()}
    track_inputs = {k for k in atm_shapes if k.split(".")[0] in ("track_embed", "track_pos")}
    head_in = "head.0.weight"  # ATM's head also reads the flattened tracks (late fusion)
    assert {k: s for k, s in bc_shapes.items() if k in atm_shapes and k != head_in} == \
        {k: s for k, s in atm_shapes.items() if k not in track_inputs and k != head_in}
    assert bc_shapes[head_in][1] == bc.cfg.temporal_width < atm_shapes[head_in][1]
    assert sorted({k.split(".")[0] for k in set(bc_shapes) - set(atm_shapes)}) == ["text_norm", "text_spatial",
                                                                                  "text_temporal"]
    assert not bc.uses_tracks and bc.late_dim == 0
    # the temporal transformer sees the instruction as a token of its own in every step
    assert (atm.tokens_per_step, bc.tokens_per_step) == (4, 5)
    assert bc.temporal_bias(bc.cfg.window).shape == (bc.cfg.temporal_heads, bc.cfg.window * 5, bc.cfg.window * 5)


def test_bc_zeroes_tracks_and_reads_the_instruction_in_both_transformers():
    _, bc = _policies()
    cfg = bc.cfg
    images = torch.rand(2, 2, 3, *cfg.image_hw) * 2 - 1
    joint, gripper, text = torch.randn(2, 7), torch.randn(2, 2), torch.randn(2, 6)
    tracks = torch.rand(2, 2, cfg.num_points, cfg.track_len, 2)
    with torch.no_grad():
        step, late = bc.encode_step(images, tracks, joint, gripper, text)
        step0, late0 = bc.encode_step(images, None, joint, gripper, text)
        assert torch.equal(step, step0) and torch.equal(late, late0) and not late.any()  # tracks have no effect
        other_step, _ = bc.encode_step(images, None, joint, gripper, -text)
        assert not torch.allclose(step, other_step)  # spatial transformer sees the instruction
        window = step[:, None].expand(2, cfg.window, -1, -1)
        lates = late[:, None].expand(2, cfg.window, -1)
        assert not torch.allclose(bc.act(window, lates, text), bc.act(window, lates, -text))  # and the temporal one


def test_bc_agent_trains_on_labelled_demos_only(tmp_path):
    use_cache(tmp_path)
    torch.set_num_threads(1)
    manifest, data_dir = synthetic_split(tmp_path, labelled=("demo_1",))
    agent = get_agent("bc")("smoke", work_dir=tmp_path / "run", progress=False)
    agent.fit(TrainingData(manifest=manifest, data_dir=data_dir), Budget(epochs=1))
    config = json.loads((tmp_path / "run" / "policy" / "config.json").read_text())
    assert config["train_demos"] == 1 and config["model"]["language"] is True and config["track_model"] is None
    assert not (tmp_path / "run" / "track_model").exists() and agent.track_model is None
