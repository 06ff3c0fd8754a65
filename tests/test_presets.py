"""Presets are data, and the `paper` preset reproduces the reference's model sizes."""

import dataclasses

import pytest
import torch

from atm_bench.errors import UserError
from atm_bench.presets import PRESETS, get_preset


def test_unknown_preset_is_a_user_error():
    with pytest.raises(UserError, match="smoke"):
        get_preset("huge")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_consistent(name):
    p = get_preset(name)
    assert p.to_dict()["name"] == name
    assert p.policy.track_len <= p.track_model.track_len
    assert p.track_model.image_hw == p.policy.image_hw == (p.image_size, p.image_size)
    assert p.data.labelled_demos <= p.data.demos_per_task


def test_paper_track_transformer_matches_reference():
    from atm_bench.atm.track_transformer import TrackTransformer
    from atm_bench.atm.transformer import count_parameters
    from atm_bench.flops import count_flops

    cfg = get_preset("paper").track_model
    model = TrackTransformer(cfg).eval()
    assert cfg.num_tokens == 193
    params = count_parameters(model)
    assert abs(params / 13.0e6 - 1) < 0.05, params
    count, _ = count_flops(model, torch.zeros(1, 3, 128, 128), torch.rand(1, 32, 2), torch.zeros(1, cfg.text_dim))
    assert abs(count.macs / 2.6e9 - 1) < 0.05, count.macs


def test_with_training_seed_sets_every_training_stage_and_only_that():
    from atm_bench.baselines.presets import get_baseline_preset
    from atm_bench.presets import with_training_seed

    preset = get_preset("quick")
    seeded = with_training_seed(preset, 2)
    assert seeded.policy_training.seed == seeded.track_training.seed == 2
    assert dataclasses.replace(seeded, policy_training=preset.policy_training,
                               track_training=preset.track_training) == preset  # nothing else changes
    assert with_training_seed(preset, None) is preset
    baseline = with_training_seed(get_baseline_preset("quick"), 5)
    assert (baseline.r3m.training.seed, baseline.idm.training.seed, baseline.unipi.video.training.seed) == (5, 5, 5)


def test_point_source_sets_both_stages_and_is_checked():
    from atm_bench.presets import PolicyConfig, TrainConfig, with_point_source

    preset = get_preset("smoke")
    assert preset.track_training.point_source == "all"  # the paper: query points anywhere
    assert preset.policy.point_source == "all"  # and the policy reads every grid track
    objects = with_point_source(preset, "objects")
    assert objects.track_training.point_source == "objects" and objects.policy.point_source == "objects"
    assert objects.policy_training == preset.policy_training
    assert dataclasses.replace(objects, track_training=preset.track_training, policy=preset.policy) == preset
    with pytest.raises(UserError, match="unknown point source 'arm'; valid choices: all, objects, robot"):
        TrainConfig(epochs=1, batch_size=1, lr=1e-3, point_source="arm")
    with pytest.raises(UserError, match="unknown point source 'arm'"):
        PolicyConfig(point_source="arm")


@pytest.mark.parametrize("field, value", [("point_source", "objects"), ("track_dropout", 0.5)])
def test_settings_added_later_enter_training_keys_only_when_set(field, value):
    """A KEY_WHEN_SET policy field at its default leaves every preset's cache key as it was before
    the field existed (stored runs stay valid); set, it is part of the key."""
    from atm_bench.presets import training_view

    for name in PRESETS:
        for with_tracks in (True, False):
            assert field not in training_view(get_preset(name), with_tracks)["policy"]
    assert "dropout" in training_view(get_preset("quick"), True)["policy"]  # fields without the metadata stay
    quick = get_preset("quick")
    changed = dataclasses.replace(quick, policy=dataclasses.replace(quick.policy, **{field: value}))
    assert training_view(changed, True)["policy"][field] == value
