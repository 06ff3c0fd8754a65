"""Track-guided policy: reference size, causality, ablation flags, BC mode, cached stepping."""

import dataclasses

import pytest
import torch

from atm_bench.atm.policy import TrackGuidedPolicy, policy_query_points
from atm_bench.atm.transformer import count_parameters
from atm_bench.presets import get_preset


def _cfg(**kw):
    return dataclasses.replace(get_preset("smoke").policy, **kw)


def _batch(cfg, b=2, t=None, hw=None):
    t = t or cfg.window
    h, w = hw or cfg.image_hw
    g = torch.Generator().manual_seed(0)
    return (torch.rand(b, t, 2, 3, h, w, generator=g) * 2 - 1, torch.rand(b, t, 2, cfg.num_points, 16, 2, generator=g),
            torch.randn(b, t, 7, generator=g), torch.randn(b, t, 2, generator=g))


def test_query_grid_is_two_offset_4x4_grids():
    q = policy_query_points(32)
    assert q.shape == (32, 2)
    assert torch.allclose(q[:16].min(0).values, torch.tensor([0.05, 0.05]))
    assert torch.allclose(q[:16].max(0).values, torch.tensor([0.85, 0.85]))
    assert torch.allclose(q[16:].min(0).values, torch.tensor([0.15, 0.15]))
    assert torch.allclose(q[16:].max(0).values, torch.tensor([0.95, 0.95]))
    assert q[1, 0] > q[0, 0] and q[1, 1] == q[0, 1]  # x varies along a row first


def test_paper_policy_size_matches_reference():
    params = count_parameters(TrackGuidedPolicy(get_preset("paper").policy))
    assert abs(params / 8.9e6 - 1) < 0.05, params


def test_shapes_on_non_square_images():
    cfg = _cfg(image_hw=(32, 48))
    policy = TrackGuidedPolicy(cfg)
    assert cfg.image_tokens_per_view == 4 * 6
    out = policy(*_batch(cfg, hw=(32, 48)))
    assert out.shape == (2, cfg.window, 7)


def test_temporal_attention_is_block_causal():
    cfg = _cfg()
    policy = TrackGuidedPolicy(cfg).eval()
    images, tracks, joint, grip = _batch(cfg)
    a = policy(images, tracks, joint, grip)
    images2, joint2 = images.clone(), joint.clone()
    images2[:, -1] = 0.0
    joint2[:, -1] += 1.0
    b = policy(images2, tracks, joint2, grip)
    earlier = (a[:, :-1] - b[:, :-1]).abs().max().item()
    last = (a[:, -1] - b[:, -1]).abs().max().item()
    assert earlier < 1e-3 * last, (earlier, last)


def test_cached_stepping_equals_the_window_forward():
    cfg = _cfg()
    policy = TrackGuidedPolicy(cfg).eval()
    images, tracks, joint, grip = _batch(cfg)
    full = policy(images, tracks, joint, grip)
    with torch.no_grad():
        steps = [policy.encode_step(images[:, i], tracks[:, i], joint[:, i], grip[:, i]) for i in range(cfg.window)]
    step_tok = torch.stack([s for s, _ in steps], 1)
    late = torch.stack([l for _, l in steps], 1)
    assert torch.allclose(policy.act(step_tok, late), full[:, -1].clamp(-1, 1), atol=1e-5)


@pytest.mark.parametrize("track_len", [4, 8])
def test_track_length_and_fusion_flags(track_len):
    base = count_parameters(TrackGuidedPolicy(_cfg(track_len=track_len)))
    no_late = TrackGuidedPolicy(_cfg(track_len=track_len, late_fusion=False))
    no_early = TrackGuidedPolicy(_cfg(track_len=track_len, early_fusion=False))
    assert no_late.late_dim == 0 and TrackGuidedPolicy(_cfg(track_len=track_len)).late_dim == 2 * 32 * track_len * 2
    assert count_parameters(no_late) < base and count_parameters(no_early) < base
    for policy in (no_late, no_early):
        assert policy(*_batch(policy.cfg)).shape == (2, 3, 7)


def test_bc_mode_ignores_tracks_and_uses_language():
    cfg = _cfg(language=True, text_dim=16, early_fusion=False, late_fusion=False)
    policy = TrackGuidedPolicy(cfg).eval()
    images, tracks, joint, grip = _batch(cfg)
    text = torch.randn(2, 16)
    a = policy(images, tracks, joint, grip, text)
    assert torch.allclose(a, policy(images, tracks * 0 + 0.3, joint, grip, text), atol=1e-6)
    assert torch.allclose(a, policy(images, None, joint, grip, text), atol=1e-6)
    assert (a - policy(images, tracks, joint, grip, torch.randn(2, 16))).abs().max() > 1e-4
    assert not policy.uses_tracks


def test_instruction_ablation_reads_tracks_and_instruction():
    """ATM's policy with `language` (the --instruction ablation): both inputs change its actions."""
    torch.manual_seed(0)
    cfg = _cfg(language=True, text_dim=16)
    policy = TrackGuidedPolicy(cfg).eval()
    images, tracks, joint, grip = _batch(cfg)
    text = torch.randn(2, 16)
    a = policy(images, tracks, joint, grip, text)
    assert policy.uses_tracks
    assert (a - policy(images, tracks * 0 + 0.3, joint, grip, text)).abs().max() > 1e-4
    assert (a - policy(images, tracks, joint, grip, torch.randn(2, 16))).abs().max() > 1e-4


def test_track_scaling_reads_displacements_in_training_set_units():
    """`track_scaling`: a track enters as its displacement from the query point over the training
    set's displacement std, so shifting a whole track changes nothing and the scale is a buffer."""
    torch.manual_seed(0)
    cfg = _cfg(track_scaling=True)
    policy = TrackGuidedPolicy(cfg).eval()
    images, tracks, joint, grip = _batch(cfg)
    policy.set_track_stats(tracks * 0.05)
    moved = (tracks * 0.05)[..., : cfg.track_len, :] - (tracks * 0.05)[..., :1, :]
    assert torch.isclose(policy.track_scale, moved.std())
    a = policy(images, tracks, joint, grip)
    assert torch.allclose(a, policy(images, tracks + 0.3, joint, grip), atol=1e-5)
    assert (a - policy(images, tracks * 1.5, joint, grip)).abs().max() > 1e-4
    assert "track_scale" in policy.state_dict()
    assert "track_scale" not in TrackGuidedPolicy(_cfg(track_scaling=False)).state_dict()  # older checkpoints load


def test_policy_overfits_one_batch():
    torch.manual_seed(0)
    cfg = _cfg()
    policy = TrackGuidedPolicy(cfg)
    images, tracks, joint, grip = _batch(cfg, b=4)
    actions = torch.rand(4, cfg.window, 7) * 2 - 1
    opt = torch.optim.AdamW(policy.parameters(), lr=2e-3)
    first = None
    for _ in range(150):
        loss = policy.loss(policy(images, tracks, joint, grip), actions)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first / 10


def test_a_chunk_gives_each_step_the_action_of_its_own_window():
    """Training on chunks (each frame encoded once, a sliding band over steps) computes, at every
    step with W - 1 steps before it, what inference computes on that step's window."""
    cfg = _cfg(dropout=0.0)
    torch.manual_seed(0)
    policy = TrackGuidedPolicy(cfg).eval()
    with torch.no_grad():
        policy.step_bias.normal_()  # a non-zero step-offset bias must also be shift-invariant
        images, tracks, joint, gripper = _batch(cfg, t=cfg.window + 4)
        chunk = policy(images, tracks, joint, gripper)
        for end in range(cfg.window, cfg.window + 5):
            sl = slice(end - cfg.window, end)
            window = policy(images[:, sl], tracks[:, sl], joint[:, sl], gripper[:, sl])
            assert torch.allclose(chunk[:, end - 1], window[:, -1], atol=1e-5)
    assert policy.targets(chunk).shape[1] == 5


def test_proprio_is_standardised_with_the_training_statistics():
    policy = TrackGuidedPolicy(_cfg())
    proprio = torch.randn(100, 9) * torch.tensor([2.0] * 7 + [0.02] * 2) + 1.0
    policy.set_proprio_stats(proprio)
    assert torch.allclose(policy.proprio_mean, proprio.mean(0)) and torch.allclose(policy.proprio_std, proprio.std(0))
    assert {"proprio_mean", "proprio_std", "step_bias"} <= set(policy.state_dict())


def test_action_chunk_loss_compares_each_prediction_with_the_step_it_is_for():
    cfg = _cfg(action_horizon=3)
    policy = TrackGuidedPolicy(cfg)
    b, t, k = 2, cfg.window + 4, 3
    pred = torch.randn(b, t, k * 7)
    actions = torch.randn(b, t, 7)
    out = policy.loss(pred, actions)
    targets = t - cfg.window + 1
    chunks, acts = pred[:, cfg.window - 1:].reshape(b, targets, k, 7), actions[:, cfg.window - 1:]
    errors = [(chunks[:, i, j] - acts[:, i + j]).pow(2) for i in range(targets) for j in range(k) if i + j < targets]
    assert torch.allclose(out["loss"], torch.stack(errors).mean())
    assert torch.allclose(out["action_mse"], (chunks[:, :, 0] - acts).pow(2).mean())
    assert policy(*_batch(cfg)).shape == (2, cfg.window, k * 7)


def test_temporal_ensembling_averages_the_predictions_for_each_step_and_restarts_with_episodes():
    from atm_bench.agents.windowed import WindowedAgent

    windowed = type("Windowed", (WindowedAgent,), {})
    windowed.__abstractmethods__ = frozenset()  # the window and ensembling logic alone
    agent = windowed()
    step = [torch.zeros(2, 1)]
    plans = [torch.full((2, 3, 1), float(i)) + torch.arange(3.0)[None, :, None] * 10 for i in range(4)]
    windows = agent.roll(None, step, 2)
    assert agent.ensemble(plans[0]).flatten().tolist() == [0.0, 0.0]  # plan 0 for step 0
    windows = agent.roll(windows, step, 2)
    assert agent.ensemble(plans[1]).flatten().tolist() == [(10 + 1) / 2] * 2  # plan 0's 2nd, plan 1's 1st
    agent.on_episode_start(torch.tensor([False, True]).numpy())
    windows = agent.roll(windows, step, 2)
    out = agent.ensemble(plans[2]).flatten().tolist()
    assert out == [(20 + 11 + 2) / 3, 2.0]  # env 1 restarted: only its new plan counts
    single = windowed()
    single.roll(None, step, 2)
    assert torch.equal(single.ensemble(plans[3][:, :1]), plans[3][:, 0])  # K = 1: the plan's action


def test_track_dropout_zeroes_whole_samples_in_training_only():
    """`track_dropout`: in training a dropped sample's tracks are BC's input (zero displacement),
    the rest untouched; in evaluation nothing is dropped."""
    torch.manual_seed(0)
    cfg = _cfg(track_dropout=0.5)
    policy = TrackGuidedPolicy(cfg).train()
    images, tracks, joint, grip = _batch(cfg, b=16)
    policy.set_track_stats(tracks)
    args = (images[:, 0], tracks[:, 0], joint[:, 0], grip[:, 0])
    step, late = policy.encode_step(*args)
    zero_step, _ = policy.encode_step(images[:, 0], tracks[:, 0] * 0, joint[:, 0], grip[:, 0])
    dropped = late.abs().sum(1) == 0
    assert 0 < int(dropped.sum()) < 16
    assert torch.allclose(step[dropped], zero_step[dropped], atol=1e-6)
    assert (step[~dropped] - zero_step[~dropped]).abs().max() > 1e-4
    policy.eval()
    assert bool((policy.encode_step(*args)[1].abs().sum(1) > 0).all())
