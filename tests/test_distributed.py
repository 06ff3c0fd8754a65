"""Multi-process training under torchrun (gloo, 2 CPU processes) gives the weights one process
gives with the same global batch; a model the step does not call through `data_parallel` is
refused with one line."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = '''
import sys
import torch
from torch import nn
from torch.utils.data import Dataset
from atm_bench.learning.distributed import data_parallel, init_from_env
from atm_bench.learning.training import make_loader, train_loop
from atm_bench.presets import TrainConfig

init_from_env()
torch.set_num_threads(1)

class Pairs(Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=g)
        self.y = torch.tanh(self.x @ torch.randn(6, 3, generator=g))
    def __len__(self):
        return len(self.x)
    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))
net = model if sys.argv[2] == "unwrapped" else data_parallel(model)

def step(batch, train):
    return {"loss": ((net(batch["x"]) - batch["y"]) ** 2).mean()}

cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, warmup_epochs=0.5, grad_clip=1.0, seed=3)
train_loop(model, step, make_loader(Pairs(64, 1), 8, True, cfg.seed), make_loader(Pairs(16, 2), 8, False), cfg,
           sys.argv[1], {"kind": "test"}, progress=False, description="test network")
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(tmp_path, out: str, processes: int, mode: str = "wrapped") -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", f"--master_port={_free_port()}"]
    return subprocess.run([*launcher, str(script), str(tmp_path / out), mode], capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_two_processes_train_the_weights_of_one(tmp_path):
    one = _train(tmp_path, "one", 1)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _train(tmp_path, "two", 2)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(tmp_path / "two" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), (k, (a[k] - b[k]).abs().max())
    history_one = (tmp_path / "one" / "history.json").read_text()
    assert '"epoch": 3' in history_one and '"epoch": 3' in (tmp_path / "two" / "history.json").read_text()


@pytest.mark.slow
def test_a_step_that_bypasses_data_parallel_is_refused_under_torchrun(tmp_path):
    result = _train(tmp_path, "bad", 2, mode="unwrapped")
    assert result.returncode != 0
    assert "trains in one process only" in result.stdout + result.stderr


@pytest.mark.slow
def test_atm_bench_train_runs_under_torchrun(tmp_path):
    """The CLI as the README shows it: `torchrun --nproc_per_node 2 atm-bench train tracks|policy`
    (gloo on the CPU); rank 0 alone prints and writes."""
    from pathlib import Path

    from atm_synthetic import write_task_file
    from atm_bench.envs.libero.suites import list_tasks

    task = list_tasks("libero_goal")[0]
    write_task_file(tmp_path / "data" / "libero_goal" / f"{task.name}_demo.hdf5", demos=4, length=8,
                    instruction=task.instruction)
    cli = str(Path(sys.executable).parent / "atm-bench")
    common = ["--suite", "libero-goal", "--preset", "smoke", "--tasks", "0", "--data-dir", str(tmp_path / "data"),
              "--epochs", "1"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "ATM_BENCH_CACHE": str(tmp_path / "cache")}
    for argv, out in ((["train", "tracks"], "tm"), (["train", "policy", "--agent", "atm", "--track-model",
                                                      str(tmp_path / "tm")], "policy")):
        result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                                 f"--master_port={_free_port()}", cli, *argv, *common, "--out", str(tmp_path / out)],
                                capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count("best validation loss") == 1, result.stdout  # rank 0 only
        assert (tmp_path / out / "model.safetensors").is_file()


ORDERS = '''
import sys
from pathlib import Path
from torch import nn
from atm_bench.learning.distributed import (broadcast_from_main, data_parallel, gather_to_all, init_from_env,
                                            rank_and_world, single_process)

init_from_env()
rank = rank_and_world()[0]
order = broadcast_from_main(("train", "atm", rank + 7) if rank == 0 else None)
assert order == ("train", "atm", 7), order  # rank 0's object everywhere
assert gather_to_all({"rank": rank}) == [{"rank": 0}, {"rank": 1}]
model = nn.Linear(2, 2)
if rank == 0:
    with single_process():  # rank 0 alone: no DDP wrapping, no collectives (rank 1 does not join)
        assert rank_and_world() == (0, 1) and data_parallel(model) is model
assert rank_and_world() == (rank, 2) and data_parallel(model) is not model
import atexit
import torch.distributed as dist
atexit._run_exitfuncs()  # what the interpreter runs at exit: the process group is torn down first
assert not dist.is_initialized()
(Path(sys.argv[1]) / f"ok{rank}").write_text("ok")
'''


@pytest.mark.slow
def test_orders_from_rank_0_reach_every_process_and_single_process_trains_alone(tmp_path):
    """The runner's primitives under torchrun (`bench/torchrun_grid.py`): broadcast, gather,
    rank 0 training alone while the other process waits, and the group torn down at exit."""
    script = tmp_path / "orders.py"
    script.write_text(ORDERS)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={_free_port()}", str(script), str(tmp_path)], capture_output=True, text=True,
                            timeout=300,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "ok0").is_file() and (tmp_path / "ok1").is_file()
