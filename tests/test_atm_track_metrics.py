"""Track error in pixels against the "points stay still" baseline, on a non-square image."""

from types import SimpleNamespace

import torch

from atm_bench.atm.track_metrics import track_errors


class _Oracle(torch.nn.Module):
    """Predicts the ground truth it is given (or the query repeated when `still`)."""

    def __init__(self, truth, still=False):
        super().__init__()
        self.cfg = SimpleNamespace(image_hw=(20, 40))
        self.truth, self.still = truth, still

    def predict(self, images, queries, text):
        return queries[:, :, None].expand_as(self.truth) if self.still else self.truth


def _batch():
    # one point moving 4 px right per step (x normalised by W = 40), one still point
    steps = torch.arange(4, dtype=torch.float32)
    moving = torch.stack([0.25 + steps * 4 / 40, torch.full_like(steps, 0.5)], dim=-1)
    still = torch.tensor([[0.5, 0.25]]).expand(4, 2)
    tracks = torch.stack([moving, still])[None]  # (1, 2, 4, 2)
    return [{"image": torch.zeros(20, 40, 3, dtype=torch.uint8), "queries": tracks[0, :, 0],
             "tracks": tracks[0], "vis": torch.ones(2, 4, dtype=torch.bool), "task": 0}], tracks


def test_errors_are_pixels_at_the_model_size_against_the_still_baseline():
    data, tracks = _batch()
    perfect = track_errors(_Oracle(tracks), data, torch.zeros(1, 3))
    assert perfect["model_px"] == 0.0 and perfect["model_moving_px"] == 0.0
    # static error: moving point is 4, 8, 12 px off over the 3 future steps; still point 0
    assert abs(perfect["static_px"] - (4 + 8 + 12) / 6) < 1e-5
    assert abs(perfect["static_moving_px"] - 8.0) < 1e-5
    still = track_errors(_Oracle(tracks, still=True), data, torch.zeros(1, 3))
    assert still["model_px"] == still["static_px"] and perfect["moving_point_steps"] == 3
    # root mean square of the same distances: sqrt((16 + 64 + 144) / 6) over all, sqrt(224 / 3) moving
    assert abs(perfect["static_rmse_px"] - (224 / 6) ** 0.5) < 1e-4
    assert abs(perfect["static_moving_rmse_px"] - (224 / 3) ** 0.5) < 1e-4
    assert perfect["model_rmse_px"] == 0.0 and still["model_rmse_px"] == still["static_rmse_px"]


class _Reader(torch.nn.Module):
    """Right for instruction 0, still points for any other: a model that reads the instruction."""

    def __init__(self, truth):
        super().__init__()
        self.cfg = SimpleNamespace(image_hw=(20, 40))
        self.truth = truth

    def predict(self, images, queries, text):
        still = queries[:, :, None].expand_as(self.truth)
        return torch.where((text[:, 0] == 0)[:, None, None, None], self.truth, still)


def test_swapping_the_instruction_shows_whether_the_model_reads_it():
    data, tracks = _batch()
    text = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    reader = track_errors(_Reader(tracks), data, text)
    assert reader["model_moving_rmse_px"] == 0.0
    assert abs(reader["swapped_instruction_moving_rmse_px"] - (224 / 3) ** 0.5) < 1e-4  # the still points' error
    blind = track_errors(_Oracle(tracks), data, text)
    assert blind["swapped_instruction_moving_rmse_px"] == blind["model_moving_rmse_px"] == 0.0
    assert "swapped_instruction_moving_rmse_px" not in track_errors(_Oracle(tracks), data, text[:1])
