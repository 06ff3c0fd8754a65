"""R3M-finetune: the ResNet-18, R3M's objective, loading a published checkpoint, and the agent
end to end at `smoke` (fit on a synthetic split, batched act, FLOPs, save/load, the simulator)."""

import numpy as np
import pytest
import torch

from atm_bench.agents.base import Budget, TrainingData, get_agent
from atm_bench.errors import UserError

from baselines_data import TASK, act_in_simulator, random_obs, train_smoke_agents


def test_resnet18_is_torchvisions_without_fc():
    from atm_bench.baselines.resnet import ResNet18, feature_hw

    net = ResNet18(64)
    # torchvision resnet18 has 11,689,512 parameters, of which fc holds 512 * 1000 + 1000.
    assert sum(p.numel() for p in net.parameters()) == 11_689_512 - 513_000
    names = set(net.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer2.0.downsample.0.weight", "layer4.1.bn2.num_batches_tracked"} <= names
    x = torch.zeros(2, 3, 96, 160)  # non-square
    assert net.features(x).shape == (2, 512, *feature_hw((96, 160))) == (2, 512, 3, 5)
    assert net(x).shape == (2, 512)


def test_r3m_objective_terms_and_gradients():
    from atm_bench.baselines.presets import get_baseline_preset
    from atm_bench.baselines.r3m import R3M, _contrast

    assert float(_contrast(torch.tensor([10.0]), [torch.tensor([-10.0])])) < 1e-6
    assert float(_contrast(torch.tensor([-10.0]), [torch.tensor([10.0])])) == pytest.approx(20.0, abs=1e-4)
    torch.manual_seed(0)
    cfg = get_baseline_preset("smoke").r3m
    model = R3M(cfg, text_dim=6)
    out = model.loss(torch.rand(4, 5, 3, 32, 32) * 2 - 1, torch.randn(4, 6))
    assert {"loss", "tcn", "lang", "l1", "l2", "tcn_aligned"} <= set(out)
    expected = cfg.tcn_weight * out["tcn"] + cfg.lang_weight * out["lang"] + cfg.l1_weight * out["l1"] + cfg.l2_weight * out["l2"]
    assert float(out["loss"].detach()) == pytest.approx(float(expected), rel=1e-5)
    out["loss"].backward()
    assert model.convnet.conv1.weight.grad.abs().sum() > 0
    assert model.lang_rew[0].weight.grad.abs().sum() > 0


def test_r3m_frame_sampling_follows_r3m():
    from atm_bench.baselines.r3m import R3MVideoDataset

    ds = R3MVideoDataset([], ["agentview"], (32, 32), alpha=0.2)
    rng = np.random.default_rng(0)
    for _ in range(500):
        start, end, s0, s1, s2 = ds.frame_indices(50, rng)
        assert 0 <= start <= 10 and 39 <= end <= 49
        assert 0 <= s0 < s1 <= s2 <= 49


def _fake_r3m_file(path, extra=None, drop=None):
    from atm_bench.baselines.resnet import ResNet18

    torch.manual_seed(1)
    net = ResNet18(64)
    state = {f"module.convnet.{k}": v for k, v in net.state_dict().items() if k != drop}
    state["module.lang_rew.pred.0.weight"] = torch.zeros(3, 3)  # dropped by the mapping
    state.update(extra or {})
    torch.save({"r3m": state, "global_step": 7}, path)
    return net


def test_load_r3m_checkpoint_maps_keys_and_fails_clearly(tmp_path):
    from atm_bench.baselines.r3m import load_r3m_checkpoint

    net = _fake_r3m_file(tmp_path / "model.pt")
    loaded = load_r3m_checkpoint(tmp_path / "model.pt")
    assert set(loaded) == set(net.state_dict())
    assert torch.equal(loaded["layer3.1.conv2.weight"], net.state_dict()["layer3.1.conv2.weight"])
    torch.save(net.state_dict(), tmp_path / "torchvision.pt")  # a plain torchvision-style state dict
    assert torch.equal(load_r3m_checkpoint(tmp_path / "torchvision.pt")["conv1.weight"], net.conv1.weight)

    with pytest.raises(UserError, match="R3M checkpoint not found.*nowhere.pt"):
        load_r3m_checkpoint(tmp_path / "nowhere.pt")
    _fake_r3m_file(tmp_path / "partial.pt", drop="layer1.0.conv1.weight")
    with pytest.raises(UserError, match="1 missing \\(layer1.0.conv1.weight\\)"):
        load_r3m_checkpoint(tmp_path / "partial.pt")
    _fake_r3m_file(tmp_path / "wrong.pt", extra={"module.convnet.conv1.weight": torch.zeros(64, 3, 3, 3)})
    with pytest.raises(UserError, match="wrong shape \\(conv1.weight\\)"):
        load_r3m_checkpoint(tmp_path / "wrong.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a tensors-only"):
        load_r3m_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="width 64"):
        load_r3m_checkpoint(tmp_path / "model.pt", width=8)


def test_r3m_policy_starts_from_the_r3m_weights():
    import dataclasses

    from atm_bench.baselines.r3m import R3MPolicy
    from atm_bench.baselines.resnet import ResNet18
    from atm_bench.presets import get_preset

    cfg = dataclasses.replace(get_preset("smoke").policy, language=True, text_dim=6)
    policy = R3MPolicy(cfg, resnet_width=8)
    source = ResNet18(8)
    policy.load_r3m(source.state_dict())
    for encoder in policy.encoders:
        assert torch.equal(encoder.convnet.layer2[0].conv1.weight, source.layer2[0].conv1.weight)
    images = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    step, late = policy.encode_step(images, None, torch.zeros(2, 7), torch.zeros(2, 2), torch.zeros(2, 6))
    assert step.shape == (2, 3, cfg.temporal_width) and late.shape == (2, 2 * 32 * cfg.track_len * 2)
    assert policy.image_pos.shape == (2, 1, cfg.spatial_width)  # 32 x 32 -> one ResNet cell


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("r3m")
    agents, manifest, data_dir = train_smoke_agents(tmp, ("r3m",))
    return agents["r3m"], tmp, manifest, data_dir


def test_r3m_agent_fits_acts_counts_and_reloads(trained):
    from atm_bench.baselines.r3m import R3MAgent

    agent, tmp, _, _ = trained
    assert (tmp / "r3m" / "r3m_encoder" / "model.safetensors").is_file()
    assert agent.describe()["r3m_init"]["source"] == "random"
    agent.reset(TASK)
    obs = random_obs(3, np.random.default_rng(0))
    actions = agent.act(obs)
    assert actions.shape == (3, 7) and np.all(np.abs(actions) <= 1)
    flops = agent.flops_per_step(obs)
    assert flops["macs"] > 0 and flops["paper_convention_macs"] == 0  # no sub-goal generator
    agent.save(tmp / "saved")
    other = R3MAgent("smoke", progress=False)
    other.load(tmp / "saved")
    assert other.describe()["r3m_init"]["in_domain_epochs"] == 1
    other.reset(TASK)
    agent.reset(TASK)
    assert np.allclose(agent.act(obs), other.act(obs), atol=1e-6)


def test_r3m_weights_are_checked_before_training(trained, tmp_path):
    _, _, manifest, data_dir = trained
    agent = get_agent("r3m")("smoke", work_dir=tmp_path / "run", r3m_weights=tmp_path / "missing.pt", progress=False)
    with pytest.raises(UserError, match="R3M checkpoint not found"):
        agent.fit(TrainingData(manifest=manifest, data_dir=data_dir), Budget(epochs=1))
    assert not (tmp_path / "run").exists()


@pytest.mark.sim
def test_r3m_agent_acts_in_the_simulator(trained, tmp_path):
    agent, _, _, _ = trained
    records = act_in_simulator(agent, "r3m", tmp_path)
    assert [(r["agent"], r["steps"]) for r in records] == [("r3m", 4)]
