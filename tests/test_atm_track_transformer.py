"""Track transformer: shapes, coordinate conventions on non-square images, permutation equivariance."""

import dataclasses

import pytest
import torch

from atm_bench.atm.track_transformer import TrackTransformer, patchify, unpatchify
from atm_bench.learning.frames import to_model_images
from atm_bench.presets import get_preset


def _cfg(**kw):
    return dataclasses.replace(get_preset("smoke").track_model, **kw)


def test_shapes_on_non_square_images():
    cfg = _cfg(image_hw=(32, 48))
    model = TrackTransformer(cfg)
    images = torch.rand(3, 3, 32, 48) * 2 - 1
    pred = model(images, torch.rand(3, 5, 2), torch.randn(3, cfg.text_dim))
    assert pred.tracks.shape == (3, 5, cfg.track_len, 2)
    assert pred.pixels.shape == (3, (32 // 8) * (48 // 8), 8 * 8 * 3)
    assert pred.image_mask.sum(1).tolist() == [12, 12, 12]  # 50 % of 24 tokens, in training mode
    model.eval()
    assert not model(images, torch.rand(3, 5, 2), torch.randn(3, cfg.text_dim)).image_mask.any()


def test_patchify_roundtrip_and_layout_on_non_square_image():
    frames = torch.randint(0, 256, (2, 16, 24, 3), dtype=torch.uint8)
    images = to_model_images(frames)
    assert images.shape == (2, 3, 16, 24) and images.min() >= -1 and images.max() <= 1
    patches = patchify(images, 8)
    assert patches.shape == (2, 2 * 3, 8 * 8 * 3)
    # patch 1 is row 0, column 1: pixels x in [8, 16), y in [0, 8)
    assert torch.equal(patches[0, 1].reshape(8, 8, 3), images[0, :, 0:8, 8:16].permute(1, 2, 0))
    assert torch.equal(unpatchify(patches, 8, (16, 24)), images)


@pytest.mark.parametrize("position,features", [(False, False), (True, False), (True, True)])
def test_predictions_are_equivariant_to_permuting_queries(position, features):
    cfg = _cfg(query_position=position, query_features=features)
    model = TrackTransformer(cfg).eval()
    torch.nn.init.normal_(model.track_head.weight, std=0.5)  # the zero-initialised offset head hides nothing
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    queries = torch.rand(2, 7, 2)
    text = torch.randn(2, cfg.text_dim)
    perm = torch.randperm(7)
    a = model.predict(images, queries, text)
    b = model.predict(images, queries[:, perm], text)
    assert torch.allclose(a[:, perm], b, atol=1e-5)


def test_loss_weights_and_visibility():
    cfg = _cfg(invisible_weight=0.0)
    model = TrackTransformer(cfg)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    pred = model(images, torch.rand(2, 4, 2), torch.randn(2, cfg.text_dim))
    target = pred.tracks.detach().clone()
    vis = torch.ones(2, 4, cfg.track_len, dtype=torch.bool)
    vis[:, 0] = False
    target[:, 0] += 5.0  # a large error on invisible points only: ignored with weight 0
    out = model.loss(pred, images, target, vis)
    assert out["track_mse"].item() == pytest.approx(0.0, abs=1e-8)
    assert out["loss"].item() == pytest.approx(out["pixel_mse"].item(), rel=1e-5)
    full = dataclasses.replace(cfg, invisible_weight=1.0)
    out_full = TrackTransformer(full).loss(pred, images, target, vis)
    assert out_full["track_mse"].item() > 1.0


def test_bad_image_size_is_rejected():
    with pytest.raises(ValueError, match="divisible"):
        TrackTransformer(_cfg(image_hw=(30, 32)))


@pytest.mark.parametrize("offsets", [True, False])
def test_untrained_offset_model_predicts_still_points(offsets):
    """With `predict_offsets` the zero-initialised head makes an untrained model the still-points baseline."""
    cfg = _cfg(predict_offsets=offsets)
    model = TrackTransformer(cfg).eval()
    queries = torch.rand(2, 6, 2)
    tracks = model.predict(torch.rand(2, 3, 32, 32) * 2 - 1, queries, torch.randn(2, cfg.text_dim))
    still = queries[:, :, None, :].expand_as(tracks)
    assert torch.equal(tracks, still) is offsets


def test_query_position_embedding_matches_the_image_tokens_at_patch_centres():
    """A query at the centre of patch (row r, column c) of a non-square grid gets exactly that
    patch's fixed embedding, so (x, y) = (column, row) order and normalisation agree."""
    from atm_bench.atm.transformer import sincos_2d, sincos_points

    gh, gw = 3, 5
    centres = torch.tensor([[(c + 0.5) / gw, (r + 0.5) / gh] for r in range(gh) for c in range(gw)])
    assert torch.allclose(sincos_points(32, centres, gh, gw), sincos_2d(32, gh, gw), atol=1e-5)


def test_query_features_and_positions_work_on_non_square_images():
    cfg = _cfg(image_hw=(32, 48), query_position=True, query_features=True)
    model = TrackTransformer(cfg)
    torch.nn.init.normal_(model.track_head.weight, std=0.5)
    images, queries, text = torch.rand(2, 3, 32, 48) * 2 - 1, torch.rand(2, 5, 2), torch.randn(2, cfg.text_dim)
    tracks = model(images, queries, text).tracks
    assert tracks.shape == (2, 5, cfg.track_len, 2)
    tracks.sum().backward()
    assert model.image_embed.weight.grad.abs().sum() > 0



def test_instruction_per_track_adds_the_instruction_to_every_track_token():
    torch.manual_seed(0)
    plain = TrackTransformer(_cfg()).eval()
    torch.nn.init.normal_(plain.track_head.weight)  # the offset head starts at zero: make tokens visible
    per_track = TrackTransformer(_cfg(instruction_per_track=True)).eval()
    per_track.load_state_dict(plain.state_dict())
    images, queries, text = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 4, 2), torch.randn(2, plain.cfg.text_dim)
    with torch.no_grad():
        assert not torch.allclose(plain.predict(images, queries, text), per_track.predict(images, queries, text))
        plain.text_embed.weight.zero_(), plain.text_embed.bias.zero_()
        per_track.load_state_dict(plain.state_dict())  # a zero instruction projection: the same model
        assert torch.allclose(plain.predict(images, queries, text), per_track.predict(images, queries, text))
