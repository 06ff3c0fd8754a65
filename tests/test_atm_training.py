"""ATM datasets, augmentation and both training stages on tiny synthetic task files."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from atm_bench.atm.datasets import PolicyWindowDataset, TrackFrameDataset
from atm_bench.errors import UserError
from atm_bench.learning.augment import random_shift
from atm_bench.learning.frames import demo_refs, to_model_images
from atm_bench.presets import get_preset

from atm_synthetic import write_task_file


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATM_BENCH_CACHE", str(tmp_path / "cache"))


def _bright(image: np.ndarray, xy: np.ndarray) -> bool:
    h, w = image.shape[:2]
    return bool(image[int(xy[1] * h), int(xy[0] * w)].sum() > 300)


def test_tracks_land_on_the_square_in_non_square_images(tmp_path):
    path = write_task_file(tmp_path / "a_demo.hdf5", demos=1, length=10, h=24, w=40)
    refs = demo_refs([(path, ["demo_0"], 0)])
    ds = TrackFrameDataset(refs, ["agentview"], (24, 40), num_points=5, track_len=4, deterministic=True)
    sample = ds[3]
    image = sample["image"].numpy()
    assert image.shape == (24, 40, 3)
    assert all(_bright(image, q) for q in sample["queries"].numpy())
    assert torch.equal(sample["queries"], sample["tracks"][:, 0])
    # the random shift moves the tracks with the image
    images = to_model_images(sample["image"][None])
    torch.manual_seed(3)
    shifted, delta = random_shift(images, 3)
    moved = ((shifted[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    assert delta.abs().sum() > 0
    assert all(_bright(moved, q) for q in (sample["queries"] + delta[0]).numpy())


def test_tracks_past_the_end_repeat_the_last_frame(tmp_path):
    path = write_task_file(tmp_path / "a_demo.hdf5", demos=1, length=6)
    ds = TrackFrameDataset(demo_refs([(path, ["demo_0"], 0)]), ["eye_in_hand"], (32, 32), 5, 8, deterministic=True)
    sample = ds[4]
    tracks = sample["tracks"]
    import h5py

    with h5py.File(path) as f:
        truth = torch.from_numpy(f["data/demo_0/tracks/eye_in_hand/tracks"][()])
    assert tracks.shape == (5, 8, 2)
    order = [int(torch.argmin((truth[4] - q).abs().sum(-1))) for q in sample["queries"]]
    assert torch.equal(tracks[:, 0], truth[4, order]) and torch.equal(tracks[:, 1], truth[5, order])
    assert all(torch.equal(tracks[:, k], truth[5, order]) for k in range(2, 8))


def test_policy_windows_repeat_the_first_step(tmp_path):
    path = write_task_file(tmp_path / "a_demo.hdf5", demos=1, length=6)
    ds = PolicyWindowDataset(demo_refs([(path, ["demo_0"], 0)]), ["agentview", "eye_in_hand"], (16, 16), window=4)
    s = ds[1]
    assert s["images"].shape == (4, 2, 16, 16, 3) and s["actions"].shape == (4, 7)
    assert torch.equal(s["joint"][0], s["joint"][2]) and not torch.equal(s["joint"][2], s["joint"][3])
    assert len(ds) == 6


def test_policy_chunks_hold_every_target_once_with_its_window(tmp_path):
    path = write_task_file(tmp_path / "a_demo.hdf5", demos=1, length=10)
    refs = demo_refs([(path, ["demo_0"], 0)])
    windows = PolicyWindowDataset(refs, ["agentview", "eye_in_hand"], (16, 16), window=4)
    chunks = PolicyWindowDataset(refs, ["agentview", "eye_in_hand"], (16, 16), window=4, chunk=4)
    assert [ds.steps(i).tolist() for i, ds in ((0, chunks), (2, chunks))] == [[0, 0, 0, 0, 1, 2, 3], [3, 4, 5, 6, 7, 8, 9]]
    assert len(chunks) == 3  # targets 0-3, 4-7 and (overlapping, ending at the last step) 6-9
    targets = {int(t) for i in range(len(chunks)) for t in chunks.steps(i)[3:]}
    assert targets == set(range(10))
    # a chunk's data at each target = the window dataset's sample for that step
    c, w = chunks[2], windows[8]
    assert torch.equal(c["images"][2:6], w["images"]) and torch.equal(c["actions"][2:6], w["actions"])
    assert chunks.proprio().shape == (10, 9)


def _overfit_preset():
    p = get_preset("smoke")
    return dataclasses.replace(
        p,
        track_training=dataclasses.replace(p.track_training, epochs=40, max_steps_per_epoch=None, lr=2e-3, augment=False),
        policy_training=dataclasses.replace(p.policy_training, epochs=60, batch_size=4, max_steps_per_epoch=None,
                                            lr=2e-3, augment=False),
    )


def test_both_stages_overfit_a_tiny_dataset_and_checkpoint(tmp_path, cache):
    from atm_bench.learning.frames import StageData
    from atm_bench.atm.stages import load_policy, load_track_model, train_policy, train_track_model

    path = write_task_file(tmp_path / "data" / "a_demo.hdf5", demos=2, length=10)
    refs = demo_refs([(path, ["demo_0", "demo_1"], 0)])
    data = StageData(train=refs, val=refs[:1], instructions=["move the square"])
    preset = _overfit_preset()
    torch.set_num_threads(1)

    stage1 = train_track_model(preset, data, tmp_path / "tracks", progress=False, pictures=4)
    hist = stage1.history
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] / 10, (hist[0], hist[-1])
    assert (tmp_path / "tracks" / "pictures" / "epoch_040.png").is_file()
    config = json.loads((tmp_path / "tracks" / "config.json").read_text())
    assert config["best_epoch"] == stage1.best_epoch and config["model"]["text_dim"] == 384
    model, _ = load_track_model(tmp_path / "tracks")
    assert not model.training
    # resumption: the same call finds the run finished and trains no further
    again = train_track_model(preset, data, tmp_path / "tracks", progress=False, pictures=0)
    assert again.epochs_run == 40 and len(again.history) == 40

    stage2 = train_policy(preset, data, tmp_path / "policy", track_model_dir=tmp_path / "tracks", progress=False)
    assert stage2.history[-1]["train_loss"] < stage2.history[0]["train_loss"] / 10
    policy, cfg = load_policy(tmp_path / "policy")
    assert cfg["track_model"] == str(tmp_path / "tracks") and policy.uses_tracks
    # track_scaling (on at smoke): the scale is the predicted displacements' std, saved with the weights
    assert policy.cfg.track_scaling and 0 < float(policy.track_scale) < 0.5 and float(policy.track_scale) != 1.0


def test_bc_variant_trains_without_a_track_model(tmp_path, cache):
    from atm_bench.learning.frames import StageData
    from atm_bench.atm.stages import load_policy, train_policy

    path = write_task_file(tmp_path / "data" / "a_demo.hdf5", demos=1, length=8)
    refs = demo_refs([(path, ["demo_0"], 0)])
    preset = _overfit_preset()
    result = train_policy(preset, StageData(refs, [], ["move the square"]), tmp_path / "bc", language=True,
                          epochs=2, progress=False)
    assert result.epochs_run == 2
    policy, cfg = load_policy(tmp_path / "bc")
    assert cfg["model"]["language"] and not policy.uses_tracks


def test_both_stages_train_under_bf16_autocast_with_fp32_weights(tmp_path, cache):
    """The CUDA recipe (bf16 autocast, fp32 weights and optimiser) run on the CPU, where autocast
    also exists: finite losses, fp32 checkpoints, the same loop."""
    from safetensors.torch import load_file

    from atm_bench.atm.stages import train_policy, train_track_model
    from atm_bench.learning.frames import StageData

    path = write_task_file(tmp_path / "data" / "a_demo.hdf5", demos=2, length=8)
    refs = demo_refs([(path, ["demo_0", "demo_1"], 0)])
    data = StageData(train=refs, val=refs[:1], instructions=["move the square"])
    preset = _overfit_preset()
    stage1 = train_track_model(preset, data, tmp_path / "tracks", epochs=2, progress=False, pictures=2,
                               precision="bf16")
    stage2 = train_policy(preset, data, tmp_path / "policy", track_model_dir=tmp_path / "tracks", epochs=2,
                          progress=False, precision="bf16")
    for result, out in ((stage1, "tracks"), (stage2, "policy")):
        assert all(np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"]) for row in result.history)
        weights = load_file(str(tmp_path / out / "model.safetensors"))
        assert {t.dtype for t in weights.values()} <= {torch.float32, torch.int64, torch.bool}, out


def test_out_of_memory_names_the_batch_size_to_lower(tmp_path):
    import torch

    from atm_bench.learning.training import train_loop
    from atm_bench.presets import TrainConfig

    model = torch.nn.Linear(2, 1)

    def step(batch, train):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")

    cfg = TrainConfig(epochs=1, batch_size=512, lr=1e-3)
    with pytest.raises(UserError, match=r"out of memory training the policy at batch size 512 \(preset 'paper'\)"):
        train_loop(model, step, [torch.zeros(1)], None, cfg, tmp_path, {"preset": "paper"}, progress=False,
                   description="policy")


def test_item_rng_is_fixed_for_validation_and_seeded_for_training():
    """Training draws once came from an unseeded generator: R3M's and UniPi's trainings could not
    be repeated, and their seeds differed only by chance."""
    import numpy as np

    from atm_bench.learning.frames import item_rng

    assert item_rng(0, 5, True).integers(1 << 30) == item_rng(0, 5, True).integers(1 << 30)

    def draws(seed):
        torch.manual_seed(seed)
        return [int(item_rng(0, 5, False).integers(1 << 30)) for _ in range(3)]

    assert draws(1) == draws(1)  # reproducible from the run's seed
    assert draws(1) != draws(2) and len(set(draws(1))) == 3  # seeds differ, and so do epochs
    assert isinstance(item_rng(0, 5, False), np.random.Generator)


def test_moving_fraction_draws_that_share_among_moving_points(tmp_path):
    path = write_task_file(tmp_path / "a_demo.hdf5", demos=1, length=10)
    refs = demo_refs([(path, ["demo_0"], 0)])
    ds = TrackFrameDataset(refs, ["agentview"], (32, 32), num_points=8, track_len=4, moving_fraction=0.5)
    visible = np.ones(100, bool)
    moving = np.zeros(100, bool)
    moving[:10] = True
    for seed in range(20):
        chosen = ds._sample_points(visible, np.random.default_rng(seed), moving)
        assert len(chosen) == 8 and len(set(chosen.tolist())) == 8
        assert (chosen < 10).sum() >= 4  # the rest is uniform over the visible points
    # a window moves a point when it leaves its query position by more than 1 px
    tracks = np.zeros((4, 3, 2), np.float32)
    tracks[2, 1, 0] = 2 / 32
    tracks[3, 2, 1] = 0.5 / 32
    assert ds._moving(tracks).tolist() == [False, True, False]


ROBOT_CENTRE = [True, False, False, False, False]  # the square's centre "on the robot", its corners not


def _queried(ds) -> set[int]:
    """Which of the square's 5 points (0 = centre) the samples' queries are, over every sample."""
    import h5py

    with h5py.File(ds.demos[0].file) as f:
        truth = f["data/demo_0/tracks/agentview/tracks"][()]
    points = set()
    for i, (_, _, t) in enumerate(ds.index):
        for q in ds[i]["queries"].numpy():
            points.add(int(np.argmin(np.abs(truth[t] - q).sum(-1))))
    return points


@pytest.mark.parametrize("moving_fraction", [0.0, 1.0])
def test_point_source_draws_only_that_sources_points(tmp_path, moving_fraction):
    path = write_task_file(tmp_path / "a_demo.hdf5", demos=1, length=6, on_robot=ROBOT_CENTRE)
    refs = demo_refs([(path, ["demo_0"], 0)])

    def dataset(source):
        return TrackFrameDataset(refs, ["agentview"], (32, 32), num_points=3, track_len=4, point_source=source,
                                 moving_fraction=moving_fraction)

    assert _queried(dataset("robot")) == {0}
    assert _queried(dataset("objects")) == {1, 2, 3, 4}
    assert _queried(dataset("all")) == {0, 1, 2, 3, 4}


def test_a_view_without_the_sources_points_gives_no_samples(tmp_path):
    import h5py

    path = write_task_file(tmp_path / "a_demo.hdf5", demos=1, length=6, on_robot=ROBOT_CENTRE)
    with h5py.File(path, "a") as f:
        f["data/demo_0/tracks/eye_in_hand/on_robot"][:] = False  # the wrist camera sees no robot here
    refs = demo_refs([(path, ["demo_0"], 0)])
    ds = TrackFrameDataset(refs, ["agentview", "eye_in_hand"], (32, 32), num_points=3, track_len=4,
                           point_source="robot")
    assert len(ds) == 6 and {v for _, v, _ in ds.index} == {0}
    with pytest.raises(UserError, match="no tracked point .* point source 'robot'"):
        TrackFrameDataset(refs, ["eye_in_hand"], (32, 32), num_points=3, track_len=4, point_source="robot")


def test_tracks_without_robot_flags_serve_all_points_only(tmp_path):
    """Tracks of a tracker that cannot tell the robot's points (or from before the flags were
    stored): the paper's setting trains, a source is one line naming the fix."""
    path = write_task_file(tmp_path / "a_demo.hdf5", demos=1, length=6)
    refs = demo_refs([(path, ["demo_0"], 0)])
    assert len(TrackFrameDataset(refs, ["agentview"], (32, 32), num_points=3, track_len=4)) == 6
    for source in ("objects", "robot"):
        with pytest.raises(UserError, match="do not record which points lie on the robot") as err:
            TrackFrameDataset(refs, ["agentview"], (32, 32), num_points=3, track_len=4, point_source=source)
        assert "\n" not in str(err.value) and "--tracker sim" in str(err.value)
    with pytest.raises(UserError, match="valid choices: all, objects, robot"):
        TrackFrameDataset(refs, ["agentview"], (32, 32), num_points=3, track_len=4, point_source="arm")


def test_instruction_norm_separates_near_identical_embeddings():
    from atm_bench.atm.transformer import InstructionNorm

    base = torch.randn(16)
    table = torch.stack([base + 0.01 * torch.randn(16) for _ in range(4)])
    norm = InstructionNorm(16)
    norm.fit(table)
    out = norm(table)
    assert torch.allclose(out.mean(0), torch.zeros(16), atol=1e-3)
    assert torch.cdist(out, out).fill_diagonal_(float("inf")).min() > 1.0  # raw distances are ~0.05
