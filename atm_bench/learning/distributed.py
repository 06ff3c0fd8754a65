"""Multi-process training with PyTorch's own engine: `torchrun --nproc_per_node N atm-bench train
...` runs N processes under DistributedDataParallel: gloo on the CPU, NCCL with one GPU per
process on CUDA (`cuda:LOCAL_RANK`, `local_device`).

The contract with one process: the same global batch (each rank takes its slice of every global
batch, `GlobalBatchSampler`), the same learning-rate schedule (the step count does not change) and
the same sample order, so a deterministic training gives the same weights, up to float summation
order. Checkpoints, logs and progress come from rank 0 only. A training step must call the model
through `data_parallel(model)`, the wrapper whose forward synchronises the gradients; `train_loop`
refuses, with one line, a model that was not wrapped when it runs under torchrun.
"""

from __future__ import annotations

import atexit
import math
import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

from atm_bench.errors import UserError

_WRAPPED: set[int] = set()  # ids of the modules `data_parallel` wrapped in this process
_ALONE = [False]  # True inside `single_process()`: this process trains as if it were the only one


def init_from_env(device: str = "cpu", timeout: timedelta | None = None) -> bool:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1); True when
    this process is one of several. Idempotent. On CUDA each process takes its local GPU (NCCL).
    `timeout`: how long a collective may wait for the others (torch's default otherwise; the
    runner's followers wait through whole stages that rank 0 runs alone)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo", **({"timeout": timeout} if timeout else {}))
        atexit.register(_leave_process_group)
    return True


def _leave_process_group() -> None:
    """At exit: tear the group down before the interpreter does. Left to static destruction, a
    process group's worker threads can still be joinable, and the process then aborts
    ("terminate called without an active exception") after its work is done."""
    if dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: str) -> str:
    """This process's device: under torchrun on CUDA its local GPU (`cuda:LOCAL_RANK`), else `device`."""
    if torch.device(device).type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def _reduce_device() -> torch.device:
    """Where collective tensors live: the process's GPU under NCCL, the CPU under gloo."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized() and not _ALONE[0]:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def single_process() -> Iterator[None]:
    """Inside it this process trains alone (no DDP wrapping, no collectives) while the others wait:
    the runner's way to train, on rank 0, an agent whose training cannot run under DDP."""
    _ALONE[0] = True
    try:
        yield
    finally:
        _ALONE[0] = False


def broadcast_from_main(obj: Any = None) -> Any:
    """Rank 0's `obj` on every process (any picklable object); `obj` itself in one process."""
    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_reduce_device())
    return box[0]


def gather_to_all(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order, on every process."""
    world = rank_and_world()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def is_main() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def mean_over_processes(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the processes (validation metrics of each rank's slice)."""
    if rank_and_world()[1] == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t)
    return dict(zip(keys, (t / rank_and_world()[1]).tolist()))


def any_process(flag: bool) -> bool:
    """True on every process when it is True on one (e.g. a time budget spent: all stop together)."""
    if rank_and_world()[1] == 1:
        return flag
    t = torch.tensor([int(flag)], device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def data_parallel(model: nn.Module) -> nn.Module:
    """What a training step calls: `model` wrapped in DistributedDataParallel under torchrun
    (its forward then synchronises gradients across processes), `model` itself otherwise."""
    if rank_and_world()[1] == 1:
        return model
    _WRAPPED.add(id(model))
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None  # the module is already on its device
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)  # e.g. BC's unused track inputs


def check_data_parallel(model: nn.Module, description: str) -> None:
    """Under torchrun, a model the step does not call through `data_parallel` would train on its
    rank's slice alone, each process its own weights: refuse it."""
    if rank_and_world()[1] > 1 and id(model) not in _WRAPPED:
        raise UserError(f"the {description} trains in one process only (its training step does not call the model "
                        "through atm_bench.learning.distributed.data_parallel): run it without torchrun")


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of indices for this rank: the global batches one process would draw (a seeded
    permutation per epoch, or weighted draws with replacement), each cut into equal slices, one per
    rank. Batch counts and order therefore match one process with the same global batch."""

    def __init__(self, n: int, global_batch: int, shuffle: bool, seed: int,
                 weights: Sequence[float] | torch.Tensor | None = None) -> None:
        self.rank, self.world = rank_and_world()
        if global_batch % self.world:
            raise UserError(f"batch size {global_batch} does not split over {self.world} processes: use a number of "
                            "processes that divides it")
        self.n, self.global_batch, self.shuffle, self.seed = n, global_batch, shuffle, seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.drop_last = (shuffle or weights is not None) and n > global_batch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.global_batch if self.drop_last else math.ceil(self.n / self.global_batch)

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        elif self.shuffle:
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        for b in range(len(self)):
            batch = order[b * self.global_batch:(b + 1) * self.global_batch]
            yield torch.tensor_split(batch, self.world)[self.rank].tolist()
