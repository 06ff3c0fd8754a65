"""The device a command trains and acts on, chosen once (`--device`) and carried by the run
context, and the numeric precision that goes with it.

`auto` is CUDA when a device is visible, else the CPU; `cuda` / `cuda:N` without one is refused
with one line (no CUDA device visible). On CUDA, training and inference run under bf16 autocast
with TF32 matmuls (fp32 weights, optimiser and losses); on the CPU in fp32. Checkpoints are saved
from and loaded to the CPU, so they load on any device. Every built-in agent has a CUDA path: ATM
and BC (`train tracks|policy`, their agents), R3M-finetune, VPT, UniPi(-Replan) and the reference
agents (the expert has no model). An agent without one (a plug-in whose `Agent.devices` lacks
"cuda") runs on the CPU in a CUDA run (`agent_device`), and the run says so in one line.
"""

from __future__ import annotations

import os
import re
from contextlib import nullcontext
from typing import Any, ContextManager

import torch

from atm_bench.errors import UserError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
PRECISIONS = ("auto", "bf16", "fp32")


def resolve_device(spec: str) -> str:
    """The device `spec` names on this machine ("cpu", "cuda:N"), or one line saying why not."""
    spec = str(spec).strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", spec):
        raise UserError(f"unknown device {spec!r}; valid choices: {DEVICE_CHOICES}")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec == "cpu" or (spec == "auto" and visible == 0):
        return "cpu"
    index = int(spec.partition(":")[2] or 0)
    if visible == 0:
        raise UserError(f"no CUDA device visible: --device {spec} needs one (torch {torch.__version__}, "
                        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use --device cpu")
    if index >= visible:
        raise UserError(f"--device {spec}: only {visible} CUDA device(s) visible (cuda:0..cuda:{visible - 1})")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return f"cuda:{index}"


def is_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


def autocast(device: str | torch.device, precision: str = "auto") -> ContextManager:
    """bf16 autocast on CUDA (`precision` auto or bf16), on the CPU only when asked (bf16);
    nothing for fp32."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if precision == "fp32" or (precision == "auto" and kind != "cuda"):
        return nullcontext()
    return torch.autocast(device_type=kind, dtype=torch.bfloat16)


def to_device(batch: Any, device: str | torch.device) -> Any:
    """Tensors in a batch (a tensor, or dicts / lists / tuples of them) moved to `device`; pinned
    host memory copies asynchronously."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=batch.is_pinned())
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def agent_device(agent_class, device: str) -> str:
    """Where an agent class trains and acts in a run on `device`: there when it has a path for that
    kind of device (`devices`), else the CPU."""
    return device if torch.device(device).type in getattr(agent_class, "devices", ("cpu",)) else "cpu"


def fallback_line(names: list[str], device: str) -> str | None:
    """The line a run on CUDA prints for the agents that run on the CPU instead (None: none)."""
    if not names or not is_cuda(device):
        return None
    return f"[device] {device}: {', '.join(names)} run on the CPU (no CUDA path: \"cuda\" is not in their `devices`)"


def egl_render_devices(device: str, own: bool = False) -> tuple[int, ...]:
    """The EGL devices evaluation's env workers render on, spread one per worker in turn (`()`:
    leave MuJoCo's default). Only for a CUDA run with `MUJOCO_GL=egl` and no
    `MUJOCO_EGL_DEVICE_ID` of the user's: the visible GPUs, named as robosuite names them, by their
    physical index (`CUDA_VISIBLE_DEVICES`' entries when set), which the NVIDIA EGL driver lists in
    the same order. `own`: only `device`'s own GPU (a torchrun process, one GPU per process)."""
    if not is_cuda(device) or os.environ.get("MUJOCO_GL") != "egl" or "MUJOCO_EGL_DEVICE_ID" in os.environ:
        return ()
    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    physical = [int(x) for x in visible.split(",") if x.strip().isdigit()] if visible else list(range(count))
    if own:
        return (physical[torch.device(device).index or 0],)
    return tuple(physical[:count])

