"""Suites, protocols, registration and user errors of the LIBERO environments (no simulator)."""

import gymnasium as gym
import pytest

import atm_bench.envs  # noqa: F401  (registers the ids)
from atm_bench.cli import main
from atm_bench.envs.libero import PROTOCOLS, canonical_suite, get_protocol, get_task, list_tasks
from atm_bench.envs.libero.suites import GYM_IDS, SUITES, cli_name
from atm_bench.errors import UserError


@pytest.mark.parametrize(
    "name, expected",
    [
        ("libero-goal", "libero_goal"),
        ("libero_goal", "libero_goal"),
        ("LIBERO-Goal", "libero_goal"),
        ("libero-10", "libero_10"),
        ("libero-long", "libero_10"),
        ("libero_90", "libero_90"),
    ],
)
def test_suite_names(name, expected):
    assert canonical_suite(name) == expected
    assert cli_name(name) == expected.replace("_", "-")


def test_unknown_suite_names_the_choices():
    with pytest.raises(UserError, match="libero-spatial, libero-object, libero-goal, libero-10, libero-90"):
        canonical_suite("libero-kitchen")


def test_registration_ids():
    assert set(GYM_IDS) == set(SUITES)
    for env_id in ["atm_bench/LIBERO-Spatial-v0", "atm_bench/LIBERO-Object-v0", "atm_bench/LIBERO-Goal-v0",
                   "atm_bench/LIBERO-10-v0", "atm_bench/LIBERO-90-v0"]:
        assert env_id in gym.registry


def test_protocols_are_data():
    atm, openvla = PROTOCOLS["atm"], PROTOCOLS["openvla"]
    assert (atm.episodes_per_task, atm.settle_steps) == (20, 5)
    assert {atm.horizon(s) for s in SUITES} == {600}
    assert (openvla.episodes_per_task, openvla.settle_steps) == (50, 10)
    assert [openvla.horizon(s) for s in SUITES] == [220, 280, 300, 520, 400]
    with pytest.raises(UserError, match="atm, openvla"):
        get_protocol("libero-eval")


def test_task_lists():
    assert [len(list_tasks(s)) for s in SUITES] == [10, 10, 10, 10, 90]
    task = get_task("libero-goal", 7)
    assert task.instruction == "turn on the stove"
    assert task.bddl_path.endswith("turn_on_the_stove.bddl")


def test_bad_task_index_is_a_user_error():
    with pytest.raises(UserError, match=r"valid: 0\.\.9"):
        get_task("libero_goal", 10)


def test_cli_user_errors_are_one_line(capsys):
    assert main(["envs", "list", "--suite", "libero-kitchen"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown suite" in err and "libero-goal" in err


def test_cli_list_prints_the_suite(capsys):
    assert main(["envs", "list", "--suite", "libero_goal"]) == 0
    out = capsys.readouterr().out
    assert "open the middle layer of the drawer" in out and "put the wine bottle on the rack" in out


def test_device_choices_are_resolved_once_with_one_line_errors(capsys, monkeypatch, tmp_path):
    import torch

    from atm_bench.devices import resolve_device
    from atm_bench.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("CPU") == "cpu"
    with pytest.raises(UserError, match="no CUDA device visible: --device cuda:1 needs one"):
        resolve_device("cuda:1")
    with pytest.raises(UserError, match="unknown device 'tpu'; valid choices: auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda:0" and resolve_device("cuda") == "cuda:0"
    with pytest.raises(UserError, match="only 1 CUDA device"):
        resolve_device("cuda:3")
    # On a GPU, every built-in agent gets it through the run context; an agent without a CUDA path
    # (here a plug-in whose `devices` lacks "cuda") runs on the CPU.
    from atm_bench.agents import base
    from atm_bench.atm.agent import BCAgent
    from atm_bench.bench.runner import RunConfig, Runner
    from atm_bench.devices import fallback_line

    class CPUOnlyAgent(BCAgent):
        name = "cpu-only"
        devices = ("cpu",)

    monkeypatch.setitem(base._REGISTRY, "cpu-only", CPUOnlyAgent)
    learned = ("atm", "bc", "r3m", "vpt", "unipi", "unipi-replan", "proprio-mlp", "knn")
    runner = Runner(RunConfig(suite="libero-goal", agents=(*learned, "expert", "cpu-only"), preset="smoke",
                              out=tmp_path / "run", data_dir=tmp_path / "data", device="cuda:0"), progress=False)
    assert runner.devices == {**{name: "cuda:0" for name in (*learned, "expert")}, "cpu-only": "cpu"}
    assert {name: runner.build_agent(name, 0).device for name in (*learned, "cpu-only")} == \
        {**{name: "cuda:0" for name in learned}, "cpu-only": "cpu"}
    assert fallback_line(["cpu-only"], "cuda:0") == ('[device] cuda:0: cpu-only run on the CPU (no CUDA path: "cuda" '
                                                     'is not in their `devices`)')
    assert fallback_line(["cpu-only"], "cpu") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for argv in (["run", "--suite", "libero-goal", "--device", "cuda"],
                 ["train", "policy", "--suite", "libero-goal", "--device", "cuda"],
                 ["baselines", "train", "--agent", "vpt", "--suite", "libero-goal", "--device", "cuda"],
                 ["eval", "--agent", "bc", "--suite", "libero-goal", "--device", "cuda"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "no CUDA device visible" in err, (argv, err)


def test_env_workers_render_on_the_visible_gpus_in_turn(monkeypatch):
    """A CUDA run with MUJOCO_GL=egl deals the visible GPUs (physical ids, as robosuite names them)
    to the env workers in turn; a CPU run, another GL backend, the user's own
    MUJOCO_EGL_DEVICE_ID or a synchronous vector env leave MuJoCo's default."""
    import torch

    from atm_bench.devices import egl_render_devices
    from atm_bench.envs.libero.vector import worker_factories

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.delenv("MUJOCO_EGL_DEVICE_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert egl_render_devices("cuda:0") == (2, 5) and egl_render_devices("cpu") == ()
    assert egl_render_devices("cuda:1", own=True) == (5,)  # a torchrun process renders on its own GPU
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert egl_render_devices("cuda:1") == (0, 1)
    monkeypatch.setenv("MUJOCO_EGL_DEVICE_ID", "1")
    assert egl_render_devices("cuda:0") == ()
    monkeypatch.delenv("MUJOCO_EGL_DEVICE_ID")
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert egl_render_devices("cuda:0") == ()
    fns = worker_factories({"suite": "libero_goal", "task": 0}, 5, True, None, (2, 5))
    assert [f.args[-1] for f in fns] == [2, 5, 2, 5, 2]
    assert [f.args[-1] for f in worker_factories({}, 2, False, None, (2, 5))] == [None, None]
    assert [f.args[-1] for f in worker_factories({}, 2, True, None, ())] == [None, None]


def test_each_libero_installation_reads_its_own_path_config(tmp_path):
    """LIBERO's config holds absolute paths into the installation that wrote it. A config left by
    another venv (here: one that no longer exists, as after a CI clone is removed) must not send
    this installation to its BDDL files: each installation has its own config directory."""
    import os
    import subprocess
    import sys

    import yaml

    gone = {key: f"/gone/venv/site-packages/libero/libero/{key}" for key in
            ("benchmark_root", "bddl_files", "init_states", "datasets", "assets")}
    shared = tmp_path / "libero-config"  # the one directory every venv shared before
    (shared / "0123456789ab").mkdir(parents=True)  # another installation's own
    for directory in (shared, shared / "0123456789ab"):
        (directory / "config.yaml").write_text(yaml.safe_dump(gone))
    env = {k: v for k, v in os.environ.items() if k != "LIBERO_CONFIG_PATH"} | {"ATM_BENCH_CACHE": str(tmp_path)}
    code = ("from atm_bench.envs.libero.runtime import libero; from libero.libero import get_libero_path; libero(); "
            "print(get_libero_path('bddl_files'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    bddl_files = out.strip().splitlines()[-1]
    assert os.path.isdir(os.path.join(bddl_files, "libero_goal")), bddl_files
    own = [p for p in shared.iterdir() if p.is_dir() and p.name != "0123456789ab"]
    assert len(own) == 1 and yaml.safe_load((own[0] / "config.yaml").read_text())["bddl_files"] == bddl_files
