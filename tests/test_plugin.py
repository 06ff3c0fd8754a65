"""A third-party agent, installed as its own package, is found through the `atm_bench.agents`
entry point and runs through the same split and table machinery as built-in agents."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from atm_bench.agents.base import Agent, RunContext, get_agent, make_agent
from atm_bench.data.episodes import Episode, FileHeader, write_task_file
from atm_bench.data.splits import make_split
from atm_bench.errors import UserError

def test_agents_list_shows_the_plugin(plugin_site):
    env = dict(os.environ, PYTHONPATH=str(plugin_site))
    out = subprocess.run([sys.executable, "-m", "atm_bench", "agents", "list"], env=env, capture_output=True,
                         text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("proprio-ridge"))
    assert "entry point atm_bench_proprio_agent:ProprioRidgeAgent" in line
    assert any(line.startswith("atm ") for line in out.splitlines())


def _suite(root: Path) -> Path:
    """Two tiny libero_goal-named task files whose actions are a linear map of proprioception."""
    from atm_bench.envs.libero.suites import list_tasks

    rng = np.random.default_rng(0)
    truth = rng.normal(scale=0.1, size=(15, 7))
    for spec in list_tasks("libero_goal")[:2]:
        episodes = []
        for _ in range(6):
            n = 20
            obs = {"agentview_rgb": np.zeros((n, 8, 8, 3), np.uint8), "eye_in_hand_rgb": np.zeros((n, 8, 8, 3), np.uint8),
                   "joint_states": rng.normal(size=(n, 7)), "gripper_states": rng.normal(size=(n, 2)),
                   "ee_states": rng.normal(size=(n, 6))}
            x = np.concatenate([obs["joint_states"], obs["gripper_states"], obs["ee_states"]], axis=1)
            episodes.append(Episode(actions=np.clip(x @ truth, -1, 1), states=np.zeros((n, 9)), obs=obs))
        header = FileHeader({"language_instruction": spec.instruction}, {}, spec.bddl_file)
        write_task_file(root / "libero_goal" / f"{spec.name}_demo.hdf5", header, episodes)
    return root


def test_plugin_trains_on_the_split_and_acts(plugin_site, tmp_path):
    from atm_bench.agents.base import Budget, TaskInfo, TrainingData, get_agent

    data_dir = _suite(tmp_path / "data")
    manifest = make_split(data_dir, "libero_goal", labelled=3, seed=0, tasks=[0, 1])
    agent = make_agent("proprio-ridge", RunContext(preset="smoke", seed=1, work_dir=tmp_path / "work"))
    assert (agent.preset, agent.seed) == ("smoke", 1)
    agent.fit(TrainingData(manifest=manifest, data_dir=data_dir), Budget())
    agent.reset(TaskInfo("libero_goal", 0, "t", "i"))
    obs = {"joint_states": np.zeros((3, 7)), "gripper_states": np.zeros((3, 2)), "ee_states": np.zeros((3, 6))}
    assert agent.act(obs).shape == (3, 7)
    agent.save(tmp_path / "ckpt")
    again = get_agent("proprio-ridge")()
    again.load(tmp_path / "ckpt")
    assert np.array_equal(again.act(obs), agent.act(obs))
    assert agent.flops_per_step(obs)["macs"] == 16 * 7


class _BeforeContextFields(Agent):
    """A plug-in written to the old contract: the runner used to guess its constructor's arguments."""

    name = "old-style"

    def __init__(self, preset: str = "quick", work_dir=None):
        self.preset, self.work_dir = preset, work_dir

    fit = reset = act = flops_per_step = save = load = None


def test_a_plugin_that_does_not_declare_its_run_settings_gets_one_clear_error(tmp_path):
    from atm_bench.bench.runner import RunConfig, Runner

    with pytest.raises(UserError, match="context_fields"):
        make_agent(_BeforeContextFields, RunContext(preset="smoke"))
    spec = f"{__name__}:_BeforeContextFields"
    with pytest.raises(UserError, match="_BeforeContextFields does not say which run settings it takes"):
        Runner(RunConfig(suite="libero-goal", agents=(spec,), preset="smoke", out=tmp_path / "run"), progress=False)


def test_a_subclass_inherits_the_contract_and_gets_the_run_context(plugin_site, tmp_path):
    """The example ATM variant: a `**kwargs` constructor, nothing declared, every setting arrives."""
    variant = get_agent("atm-no-late-fusion")
    assert variant.uses_track_model and not variant.privileged
    context = RunContext(preset="smoke", seed=4, work_dir=tmp_path / "w", track_model_dir=tmp_path / "tm",
                         options={"r3m_weights": "unused by ATM"})
    agent = make_agent("atm-no-late-fusion", context)
    assert (agent.preset.name, agent.preset.policy_training.seed) == ("smoke", 4)
    assert (agent.work_dir, agent.track_model_dir, agent.policy_overrides) == (
        tmp_path / "w", tmp_path / "tm", {"late_fusion": False})
    assert agent.resolved_config() != make_agent("atm", context).resolved_config()


def test_cli_choices_and_the_default_run_come_from_the_registry():
    from atm_bench.agents.base import BUILTIN_AGENTS, builtin_names
    from atm_bench.bench.runner import ALL_AGENTS
    from atm_bench.cli import build_parser

    assert ALL_AGENTS == tuple(e.name for e in BUILTIN_AGENTS if e.trained_by is not None)
    assert "expert" not in ALL_AGENTS and ALL_AGENTS[:2] == ("proprio-mlp", "knn")
    parser = build_parser()
    for argv, names in ((["train", "policy"], builtin_names("policy")), (["baselines", "train"], builtin_names("baseline"))):
        action = next(a for a in _subparser(parser, argv)._actions if a.dest == "agent")
        assert tuple(action.choices) == names
    for e in BUILTIN_AGENTS:  # every declared class builds from a context
        assert get_agent(e.name).context_fields is not None, e.name


def _subparser(parser, argv):
    import argparse

    for name in argv:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser
