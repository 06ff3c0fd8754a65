"""VPT: the non-causal inverse dynamics model, pseudo-labels vs true actions, and the agent end to
end at `smoke` (IDM -> pseudo-labels -> BC, batched act, FLOPs, save/load, the simulator)."""

import dataclasses

import numpy as np
import pytest
import torch


from baselines_data import TASK, act_in_simulator, random_obs, synthetic_split, train_smoke_agents, use_cache

VIEWS = ("agentview", "eye_in_hand")


def test_window_steps_clamp_at_the_ends():
    from atm_bench.baselines.vpt import window_steps

    assert window_steps(0, 10, 2, 3).tolist() == [0, 0, 0, 1, 2, 3]
    assert window_steps(8, 10, 2, 3).tolist() == [6, 7, 8, 9, 9, 9]


def test_idm_is_non_causal():
    from atm_bench.baselines.presets import get_baseline_preset
    from atm_bench.baselines.vpt import InverseDynamicsModel

    torch.manual_seed(0)
    cfg = get_baseline_preset("smoke").idm  # frames t-1, t, t+1
    model = InverseDynamicsModel(cfg, (32, 48), views=2).eval()
    frames = torch.rand(2, cfg.frames, 2, 3, 32, 48) * 2 - 1
    base = model(frames)
    assert base.shape == (2, 7)
    for k in range(cfg.frames):  # past, present and future frames all change the label
        changed = frames.clone()
        changed[:, k] = -changed[:, k]
        assert not torch.allclose(model(changed), base, atol=1e-6), k


def test_idm_learns_held_out_actions_and_reports_errors(tmp_path):
    """On moving-square demos the IDM beats predicting the mean action on held-out demos. The
    ratio depends on the seed at this size: 0.42-0.69 over training seeds 0-3 at 40 epochs (at 20
    epochs, 0.22-1.13), so the bar is 0.8, not a lucky seed's margin."""
    from atm_bench.atm.stages import stage_data
    from atm_bench.baselines.presets import IDMConfig
    from atm_bench.baselines.vpt import action_errors, load_idm, pseudo_label, train_idm
    from atm_bench.presets import TrainConfig, get_preset

    torch.set_num_threads(1)
    use_cache(tmp_path)
    manifest, data_dir = synthetic_split(tmp_path, demos=6, length=20, labelled=("demo_0", "demo_1", "demo_2", "demo_3"),
                                         validation=("demo_4", "demo_5"))
    labelled = stage_data(manifest, data_dir, "labelled")
    cfg = IDMConfig(frames_before=1, frames_after=2, temporal_kernel=3, stem_channels=8, image_patch=4, width=32,
                    depth=1, heads=2, mlp=64, dropout=0.0,
                    training=TrainConfig(epochs=40, batch_size=16, lr=3e-3, grad_clip=1.0, augment=False))
    train_idm(cfg, get_preset("smoke"), labelled, tmp_path / "idm", progress=False)
    idm, config = load_idm(tmp_path / "idm")
    labels = pseudo_label(idm, labelled.val, VIEWS, (32, 32))
    assert [len(a) for a in labels] == [20, 20] and all(np.abs(a).max() <= 1 for a in labels)
    errors = action_errors(labels, labelled.val)
    assert errors["steps"] == 38  # the last step of each demo has no next frame
    truth = np.concatenate([np.asarray(__import__("h5py").File(r.file)[f"data/{r.demo}/actions"][:19]) for r in labelled.val])
    assert errors["mse"] == pytest.approx(float(((np.concatenate([a[:19] for a in labels]) - truth) ** 2).mean()))
    assert errors["mse"] < 0.8 * errors["mean_predictor_mse"], errors


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vpt")
    agents, manifest, data_dir = train_smoke_agents(tmp, ("vpt",))
    return agents["vpt"], tmp


def test_vpt_pseudo_labels_every_video_and_compares_with_true_actions(trained):
    import h5py

    agent, tmp = trained
    report = agent.report
    assert report["labelled_demos"] == 2 and report["pseudo_labelled_videos"] == 2  # demos 2, 3
    assert report["held_out"]["steps"] == 11 and 0 <= report["held_out"]["gripper_sign_accuracy"] <= 1
    with h5py.File(tmp / "vpt" / "pseudo_labels.hdf5") as f, h5py.File(tmp / "data" / "libero_goal" / "a_demo.hdf5") as d:
        names = sorted(f["a_demo.hdf5"])
        assert names == ["demo_2", "demo_3"]
        pred = np.concatenate([f[f"a_demo.hdf5/{n}/actions"][:11] for n in names])
        true = np.concatenate([d[f"data/{n}/actions"][:11] for n in names])
    assert pred.shape == (22, 7) and np.abs(pred).max() <= 1
    assert report["videos_vs_true_actions"]["mse"] == pytest.approx(float(((pred - true) ** 2).mean()), rel=1e-5)


def test_vpt_policy_trains_on_real_and_pseudo_labels(trained):
    import json

    agent, tmp = trained
    config = json.loads((tmp / "vpt" / "policy" / "config.json").read_text())
    assert config["train_demos"] == 2 and config["pseudo_labelled_demos"] == 2
    assert config["model"]["language"] is True  # the BC network


def test_vpt_agent_acts_counts_and_reloads(trained):
    from atm_bench.baselines.vpt import VPTAgent

    agent, tmp = trained
    agent.reset(TASK)
    obs = random_obs(2, np.random.default_rng(0))
    actions = agent.act(obs)
    assert actions.shape == (2, 7) and np.all(np.abs(actions) <= 1)
    flops = agent.flops_per_step(obs)
    assert flops["macs"] > 0 and flops["paper_convention_macs"] == 0
    agent.save(tmp / "saved")
    assert (tmp / "saved" / "idm" / "model.safetensors").is_file() and (tmp / "saved" / "pseudo_labels.hdf5").is_file()
    other = VPTAgent("smoke", progress=False)
    other.load(tmp / "saved")
    assert other.describe()["idm_report"] == agent.report
    other.reset(TASK)
    agent.reset(TASK)
    assert np.allclose(agent.act(obs), other.act(obs), atol=1e-6)


@pytest.mark.sim
def test_vpt_agent_acts_in_the_simulator(trained, tmp_path):
    agent, _ = trained
    records = act_in_simulator(agent, "vpt", tmp_path)
    assert [(r["agent"], r["steps"]) for r in records] == [("vpt", 4)]


def test_idm_config_is_validated():
    from atm_bench.baselines.presets import IDMConfig
    from atm_bench.baselines.vpt import InverseDynamicsModel

    with pytest.raises(ValueError, match="o_\\{t\\+1\\}"):
        InverseDynamicsModel(dataclasses.replace(IDMConfig(), frames_after=0), (32, 32), 2)
    with pytest.raises(ValueError, match="odd"):
        InverseDynamicsModel(dataclasses.replace(IDMConfig(), temporal_kernel=4), (32, 32), 2)


def test_pseudo_labelled_windows_match_policy_windows_but_for_the_actions(tmp_path):
    from atm_bench.atm.datasets import PolicyWindowDataset
    from atm_bench.atm.stages import stage_data
    from atm_bench.baselines.vpt import PseudoLabelledWindows

    manifest, data_dir = synthetic_split(tmp_path)
    refs = stage_data(manifest, data_dir, "videos").train
    labels = [np.full((r.length, 7), 0.5 + k, np.float32) for k, r in enumerate(refs)]
    real = PolicyWindowDataset(refs, VIEWS, (32, 32), 3)
    pseudo = PseudoLabelledWindows(refs, VIEWS, (32, 32), 3, labels)
    assert len(real) == len(pseudo)
    for i in (0, 13, len(real) - 1):
        a, b = real[i], pseudo[i]
        assert set(a) == set(b)
        for key in ("images", "joint", "gripper", "task"):
            assert torch.equal(a[key], b[key]), key
        d = pseudo.index[i][0]
        assert torch.equal(b["actions"], torch.full((3, 7), 0.5 + d))
