"""UniPi and UniPi-Replan: the video diffusion model (sample shape and range, counted generation
cost), sub-goal sampling for both models, and the agents end to end at `smoke` (fit, open-loop
plan vs replanning every H steps, goal switching on the done flag, FLOPs, save/load, simulator)."""

import dataclasses
import json

import numpy as np
import pytest
import torch


from baselines_data import TASK, act_in_simulator, random_obs, synthetic_split, train_smoke_agents, use_cache


@pytest.fixture(scope="module")
def smoke_video():
    from atm_bench.baselines.presets import get_baseline_preset

    torch.set_num_threads(1)
    return get_baseline_preset("smoke").unipi.video


def test_diffusion_sample_has_the_right_shape_and_range(smoke_video):
    from atm_bench.baselines.video_diffusion import VideoDiffusion

    torch.manual_seed(0)
    model = VideoDiffusion(smoke_video, (32, 48), text_dim=6).eval()  # non-square frames
    cond = torch.rand(2, 3, 32, 48) * 2 - 1
    text = torch.randn(2, 6)
    plan = model.sample(cond, text, generator=torch.Generator().manual_seed(3))
    assert plan.shape == (2, 7, 3, 32, 48)
    assert torch.isfinite(plan).all() and plan.min() >= -1 and plan.max() <= 1 and plan.std() > 0
    again = model.sample(cond, text, generator=torch.Generator().manual_seed(3))
    assert torch.equal(plan, again)  # DDIM with eta 0: the noise seed fixes the plan
    other = model.sample(-cond, text, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(plan, other)  # conditioned on the current frame


def test_diffusion_loss_trains_the_unet(smoke_video):
    from atm_bench.baselines.video_diffusion import VideoDiffusion

    model = VideoDiffusion(smoke_video, (32, 32), text_dim=6)
    out = model.loss(torch.zeros(2, 3, 32, 32), torch.rand(2, 7, 3, 32, 32) * 2 - 1, torch.randn(2, 6))
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.unet.conv_in.weight.grad.abs().sum() > 0
    assert model.unet.conv_in.in_channels == 6 and model.unet.conv_out.out_channels == 3  # noisy + cond frame, per frame


def test_video_unet_is_space_time(smoke_video):
    """The 3-D UNet (as AVDC's): each generated frame depends on the other frames' noise."""
    from atm_bench.baselines.video_diffusion import VideoDiffusion

    torch.manual_seed(0)
    model = VideoDiffusion(smoke_video, (32, 32), text_dim=6).eval()
    for p in model.parameters():  # diffusers zero-initialises the temporal layers' outputs
        torch.nn.init.normal_(p, std=0.05)
    noisy, cond, t, text = torch.randn(1, 3, 7, 32, 32), torch.randn(1, 3, 32, 32), torch.tensor([10]), torch.randn(1, 6)
    other = noisy.clone()
    other[:, :, 0] += 1.0
    with torch.no_grad():
        a, b = model.denoise(noisy, cond, t, text), model.denoise(other, cond, t, text)
    assert (a[:, :, 6] - b[:, :, 6]).abs().max() > 1e-6  # a per-frame (2-D) UNet gives exactly 0


def test_generation_cost_counts_every_sampling_step(smoke_video):
    from atm_bench.baselines.video_diffusion import VideoDiffusion, generation_macs
    from atm_bench.flops import count_flops

    model = VideoDiffusion(smoke_video, (32, 32), text_dim=6).eval()
    direct = count_flops(model.sample, torch.zeros(1, 3, 32, 32), torch.zeros(1, 6))[0].macs  # the preset's 3 steps
    one_step = count_flops(model.sample, torch.zeros(1, 3, 32, 32), torch.zeros(1, 6), 1)[0].macs
    assert direct == 3 * one_step > 0
    assert generation_macs(smoke_video, (32, 32), 6) == direct  # counted on the meta device
    assert generation_macs(smoke_video, (32, 32), 6, steps=10) == 10 * one_step


def test_video_samples_evenly_spaced_or_h_ahead():
    from atm_bench.baselines.video_diffusion import SubgoalVideoDataset

    rng = np.random.default_rng(0)
    plan = SubgoalVideoDataset([], "agentview", (32, 32), frames=7)
    for _ in range(50):
        idx = plan.indices(57, rng)
        assert len(idx) == 8 and idx[-1] == 56 and np.all(np.diff(idx) >= 0)
    assert SubgoalVideoDataset([], "agentview", (32, 32), 7, deterministic=True).indices(57, rng).tolist() == \
        [0, 8, 16, 24, 32, 40, 48, 56]
    replan = SubgoalVideoDataset([], "agentview", (32, 32), frames=7, offset=8)
    for _ in range(50):
        idx = replan.indices(20, rng)
        t = idx[0]
        assert len(idx) == 8 and idx[-1] == min(t + 8, 19) and np.all(np.diff(idx) >= 0)
    assert SubgoalVideoDataset([], "agentview", (32, 32), 7, offset=8, deterministic=True).indices(57, rng).tolist() == \
        [0, 1, 2, 3, 5, 6, 7, 8]


def test_goal_windows_sample_subgoals_as_the_paper(tmp_path):
    """Goal k steps ahead: next frame ~10 % + uniform [1, t_max]; done where the goal is one step ahead."""
    import h5py

    from atm_bench.atm.stages import stage_data
    from atm_bench.baselines.unipi import GoalWindowDataset

    manifest, data_dir = synthetic_split(tmp_path, demos=2, length=40, labelled=("demo_0",), validation=("demo_1",))
    refs = stage_data(manifest, data_dir, "labelled").train
    ds = GoalWindowDataset(refs, ("agentview", "eye_in_hand"), (32, 32), window=3, goal_view="agentview", t_max=16,
                           next_frame_prob=0.1, seed=4, deterministic=True)
    rng = np.random.default_rng(0)
    offsets = np.array([ds.offset(rng) for _ in range(20000)])
    assert offsets.min() == 1 and offsets.max() == 16
    assert np.mean(offsets == 1) == pytest.approx(0.1 + 0.9 / 16, abs=0.01)
    with h5py.File(refs[0].file) as f:
        frames = f["data/demo_0/obs/agentview_rgb"][()]
    for t in (0, 5, 30, 38, 39):  # the goal is clipped to the last frame near the end
        sample = ds[t]
        steps = np.clip(np.arange(t - 2, t + 1), 0, None)
        draws = np.random.default_rng([4, t])
        goals = np.minimum(steps + np.array([ds.offset(draws) for _ in steps]), 39)  # one goal per step
        assert np.array_equal(sample["goal"].numpy(), frames[goals])
        assert sample["done"].tolist() == [float(g - s <= 1) for g, s in zip(goals, steps)]
    assert ds[39]["done"].tolist()[-1] == 1.0  # at the end the goal is the last frame
    chunks = GoalWindowDataset(refs, ("agentview", "eye_in_hand"), (32, 32), window=3, goal_view="agentview",
                               t_max=16, next_frame_prob=0.1, seed=4, deterministic=True, chunk=8)
    sample = chunks[1]
    assert sample["goal"].shape == (10, 32, 32, 3) and sample["done"].shape == (10,)
    replan = GoalWindowDataset(refs, ("agentview",), (32, 32), 3, "agentview", t_max=50, next_frame_prob=0.1,
                               fixed_horizon=8)
    assert {replan.offset(rng) for _ in range(2000)} == set(range(1, 9))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unipi")
    agents, manifest, data_dir = train_smoke_agents(tmp, ("unipi", "unipi-replan"))
    return agents, tmp


def _count_generations(agent):
    calls = []
    original = agent._generate

    def wrapped(obs, rows):
        calls.append(len(rows))
        return original(obs, rows)

    agent._generate = wrapped
    return calls


def _window_is_consistent(agent):
    """The cached window equals the window inputs encoded with each env's current goal."""
    images, joint, gripper = agent._raw
    n, w = images.shape[:2]
    goals = agent._goals()[:, None].expand(n, w, *agent._plan.shape[2:])
    fresh = agent._encode(images.flatten(0, 1), goals.flatten(0, 1), joint.flatten(0, 1), gripper.flatten(0, 1))
    return torch.allclose(fresh.view(n, w, *fresh.shape[1:]), agent._steps, atol=1e-5)


def test_unipi_plans_once_and_switches_subgoals_on_done(trained):
    agent = trained[0]["unipi"]
    assert agent.policy.cfg.views == ("agentview", "eye_in_hand", "goal") and agent.policy.cfg.action_dim == 8
    agent.reset(TASK)
    calls = _count_generations(agent)
    rng = np.random.default_rng(0)
    actions = agent.act(random_obs(3, rng))
    assert actions.shape == (3, 7) and np.all(np.abs(actions) <= 1)
    assert agent._plan.shape == (3, 7, 3, 32, 32) and calls == [3]
    for _ in range(5):
        agent.act(random_obs(3, rng))
    assert calls == [3]  # open loop: no new generation

    decide = agent.policy.decide
    done = torch.tensor([1.0, 0.0, 1.0])  # force the done flag of envs 0 and 2

    def forced(steps, late, text=None, last_only=False):
        out = decide(steps, late, text, last_only).clone()
        out[:, -1, -1] = done
        return out

    agent.policy.decide = forced
    try:
        before = agent._goal_index.copy()
        agent.act(random_obs(3, rng))
        assert (agent._goal_index - before).tolist() == [1, 0, 1]
        assert _window_is_consistent(agent)
        for _ in range(8):
            agent.act(random_obs(3, rng))
        assert agent._goal_index.tolist() == [6, before[1], 6]  # stays on the last sub-goal
    finally:
        agent.policy.decide = decide
    agent.on_episode_start(np.array([False, True, False]))
    agent.act(random_obs(3, rng))
    assert calls == [3, 1] and agent._goal_index[1] == 0  # a new episode gets its own plan


def test_unipi_replan_regenerates_every_h_steps(trained):
    agent = trained[0]["unipi-replan"]
    assert agent.video_model.cfg.frames == 7  # a plan to H ahead, as UniPi's (one full generation)
    agent.reset(TASK)
    calls = _count_generations(agent)
    rng = np.random.default_rng(1)
    for _ in range(17):
        agent.act(random_obs(2, rng))
        assert agent._goal_index.tolist() == [6, 6]  # the plan's last frame: H steps ahead
    assert calls == [2, 2, 2]  # steps 0, 8 and 16
    assert _window_is_consistent(agent)


def test_flops_amortise_generation_over_a_task(trained):
    from atm_bench.baselines.video_diffusion import generation_macs

    unipi, replan = trained[0]["unipi"], trained[0]["unipi-replan"]
    obs = random_obs(1, np.random.default_rng(2))
    for agent in (unipi, replan):
        agent.reset(TASK)
    a, b = unipi.flops_per_step(obs), replan.flops_per_step(obs)
    vm = unipi.video_model
    assert a["generation_macs"] == generation_macs(vm.cfg, vm.image_hw, vm.text_dim) > 0
    assert a["paper_convention_macs"] == pytest.approx(a["generation_macs"] / 600)
    assert b["generations_per_task"] == 75 and b["paper_convention_macs"] == pytest.approx(75 * b["generation_macs"] / 600)
    assert a["goal_switches_per_task"] == 6 and b["goal_switches_per_task"] == 74
    for f in (a, b):
        expected = (f["generations_per_task"] * f["generation_macs"] + 600 * f["policy_step_macs"]
                    + f["goal_switches_per_task"] * f["goal_switch_reencode_macs"]) / 600
        assert f["macs"] == pytest.approx(expected) and f["macs"] > f["paper_convention_macs"]


def test_unipi_saves_and_reloads(trained):
    from atm_bench.baselines.unipi import UniPiAgent, UniPiReplanAgent
    from atm_bench.errors import UserError

    agents, tmp = trained
    agent = agents["unipi"]
    agent.save(tmp / "saved")
    other = UniPiAgent("smoke", progress=False)
    other.load(tmp / "saved")
    obs = random_obs(2, np.random.default_rng(3))
    agent.reset(TASK)
    other.reset(TASK)
    assert np.allclose(agent.act(obs), other.act(obs), atol=1e-6)  # same seed -> same plan and action
    with pytest.raises(UserError, match="plans to the demo's end .UniPi's. cannot run unipi-replan"):
        UniPiReplanAgent("smoke", progress=False).load(tmp / "saved")


def test_video_overlay_is_the_current_subgoal(trained):
    agent = trained[0]["unipi"]
    agent.reset(TASK)
    assert agent.video_overlay(0).panels == ()  # no plan yet
    agent.act(random_obs(2, np.random.default_rng(4)))
    agent._goal_index[1] = 3
    overlay = agent.video_overlay(1)
    assert overlay.tracks == {} and len(overlay.panels) == 1
    goal = overlay.panels[0]
    assert goal.dtype == np.uint8 and goal.shape == (32, 32, 3)  # the models' size; videos resize it
    expected = ((agent._plan[1, 3].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255)
    assert np.array_equal(goal, expected.astype(np.uint8))


@pytest.mark.sim
@pytest.mark.parametrize("name", ["unipi", "unipi-replan"])
def test_unipi_agents_act_in_the_simulator(trained, tmp_path, name):
    """In closed loop, with the rollout video: the two views and, one view wider, the sub-goal
    the policy followed at each step (Replan: a new one from step 8)."""
    import cv2

    from atm_bench.bench.video import read_mp4

    agent, steps = trained[0][name], 10 if name == "unipi-replan" else 4
    goals = []
    act = agent.act

    def watched(obs):
        actions = act(obs)
        goals.append(agent.video_overlay(0).panels[0])
        return actions

    agent.act = watched
    try:
        records = act_in_simulator(agent, name, tmp_path, steps=steps, videos=1)
    finally:
        del agent.act
    assert [(r["agent"], r["steps"]) for r in records] == [(name, steps)]
    video = read_mp4(tmp_path / records[0]["video"]).astype(int)
    assert video.shape == (steps + 1, 128, 3 * 128, 3)  # agentview, eye-in-hand, sub-goal
    for frame, goal in zip(video, goals):
        shown = cv2.resize(goal, (128, 128), interpolation=cv2.INTER_NEAREST).astype(int)
        assert np.abs(frame[:, 256:] - shown).mean() < 10
        assert np.abs(frame[:, 256:] - shown).mean() < 0.5 * np.abs(frame[:, :128] - shown).mean()
    if name == "unipi-replan":
        assert not np.array_equal(goals[7], goals[8])  # regenerated every H = 8 steps


def test_diffusion_validation_loss_is_deterministic(smoke_video):
    from atm_bench.baselines.video_diffusion import VideoDiffusion

    model = VideoDiffusion(smoke_video, (32, 32), text_dim=6).eval()
    cond, target, text = torch.zeros(2, 3, 32, 32), torch.rand(2, 7, 3, 32, 32) * 2 - 1, torch.randn(2, 6)
    with torch.no_grad():
        first = model.validation_loss(cond, target, text)["loss"]
        assert torch.equal(first, model.validation_loss(cond, target, text)["loss"])


@pytest.mark.parametrize("steps", [3, 100])
def test_ddim_with_a_perfect_denoiser_returns_the_data(smoke_video, steps):
    """The sampler and the loss agree on v-prediction: a denoiser that predicts the true v gives
    zero loss, and DDIM with it recovers the clean frames from pure noise."""
    from atm_bench.baselines.video_diffusion import VideoDiffusion

    model = VideoDiffusion(dataclasses.replace(smoke_video, sampling_steps=steps), (16, 24), text_dim=4).eval()
    x0 = torch.rand(1, 7, 3, 16, 24) * 1.6 - 0.8
    alphas = model.scheduler.alphas_cumprod

    def oracle(noisy, cond, t, text):  # videos inside the model are (B, 3, N, H, W)
        a = alphas[t.long()].view(-1, 1, 1, 1, 1)
        eps = (noisy - a.sqrt() * x0.transpose(1, 2)) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * x0.transpose(1, 2)

    model.denoise = oracle
    assert float(model.loss(torch.zeros(1, 3, 16, 24), x0, torch.zeros(1, 4))["mse"]) < 1e-8
    plan = model.sample(torch.zeros(1, 3, 16, 24), torch.zeros(1, 4))
    assert torch.allclose(plan, x0, atol=1e-5)


@pytest.mark.slow
def test_video_model_overfits_one_video(smoke_video):
    """Training and sampling fit together: a tiny space-time UNet trained on one video (a square
    crossing the frame) for 150 steps samples plans far closer to it than copying the first frame."""
    from atm_bench.baselines.video_diffusion import VideoDiffusion

    torch.manual_seed(0)
    cfg = dataclasses.replace(smoke_video, frames=3, sampling_steps=10, block_out_channels=(8, 16),
                              head_dim=8, norm_groups=4)
    video = torch.full((4, 3, 16, 16), -0.5)
    for i in range(4):
        video[i, :, 6:10, 1 + 3 * i:5 + 3 * i] = 1.0
    cond, target, text = video[:1], video[None, 1:], torch.zeros(1, 6)
    model = VideoDiffusion(cfg, (16, 16), text_dim=6)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model.loss(cond.repeat(8, 1, 1, 1), target.repeat(8, 1, 1, 1, 1), text.repeat(8, 1))["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    plan = model.eval().sample(cond, text, generator=torch.Generator().manual_seed(1))
    copy = float(((cond[:, None] - target) ** 2).mean())
    assert float(((plan - target) ** 2).mean()) < 0.3 * copy


def test_plan_errors_compare_plans_with_copying_the_first_frame(tmp_path, smoke_video):
    """`plan_errors` (the video model's metrics.json): a model whose plans are the real frames
    scores 0, one that copies the conditioning frame scores exactly the copy baseline."""
    from atm_bench.atm.stages import stage_data
    from atm_bench.baselines.video_diffusion import SubgoalVideoDataset, plan_errors

    use_cache(tmp_path)
    manifest, data_dir = synthetic_split(tmp_path, demos=3, length=8, validation=("demo_2",))
    videos = stage_data(manifest, data_dir, "videos")
    ds = SubgoalVideoDataset(videos.train, smoke_video.view, (32, 32), smoke_video.frames, deterministic=True)
    frames = torch.stack([ds[i]["frames"] for i in range(len(ds))]).permute(0, 1, 4, 2, 3).float() / 127.5 - 1

    class Replay:  # plans the real frames of the dataset's videos (one batch: all of them)
        def sample(self, cond, text, generator=None):
            return frames[:len(cond), 1:]

    class Copy:
        def sample(self, cond, text, generator=None):
            return cond[:, None].expand(-1, smoke_video.frames, -1, -1, -1)

    text = torch.zeros(1, 6)
    perfect = plan_errors(Replay(), ds, text)
    assert perfect["plan_mse"] == perfect["plan_last_mse"] == 0.0 and perfect["copy_mse"] > 0
    assert perfect["videos"] == len(ds) == 2
    copy = plan_errors(Copy(), ds, text)
    assert copy["plan_mse"] == pytest.approx(copy["copy_mse"]) and copy["plan_last_mse"] == pytest.approx(copy["copy_last_mse"])


def test_video_model_trains_and_samples_under_bf16_autocast_with_fp32_weights(tmp_path, smoke_video):
    """UniPi's CUDA recipe (bf16 autocast of training and DDIM sampling, fp32 weights) run on the
    CPU, where autocast also exists: finite losses, an fp32 checkpoint, sampled plan pictures."""
    from safetensors.torch import load_file

    from atm_bench.atm.stages import stage_data
    from atm_bench.baselines.video_diffusion import train_video_model

    use_cache(tmp_path)
    manifest, data_dir = synthetic_split(tmp_path, demos=3, length=8, validation=("demo_2",))
    videos = stage_data(manifest, data_dir, "videos")
    result = train_video_model(smoke_video, (32, 32), videos, tmp_path / "video", epochs=1, progress=False,
                               pictures=1, device="cpu", precision="bf16")
    assert all(np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"]) for row in result.history)
    weights = load_file(str(tmp_path / "video" / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}
    assert (tmp_path / "video" / "pictures" / "plans.png").is_file()
    metrics = json.loads((tmp_path / "video" / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["videos"] == 1 and metrics["copy_mse"] > 0
