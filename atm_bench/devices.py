"""The device a command trains and acts on, chosen once (`--device`) and carried by the run
context. Training and acting on CUDA are not implemented yet: `auto` is the CPU until they are
(then: CUDA when a device is visible), an explicit CUDA choice is refused with one line that says
so, and without a GPU with the reason (no CUDA device visible)."""

from __future__ import annotations

import re

from atm_bench.errors import UserError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(spec: str) -> str:
    """The device `spec` names on this machine ("cpu" so far), or one line saying why not."""
    import torch

    spec = str(spec).strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", spec):
        raise UserError(f"unknown device {spec!r}; valid choices: {DEVICE_CHOICES}")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec in ("auto", "cpu"):
        return "cpu"
    index = int(spec.partition(":")[2] or 0)
    if visible == 0:
        raise UserError(f"no CUDA device visible: --device {spec} needs one (torch {torch.__version__}, "
                        "CUDA_VISIBLE_DEVICES=" + __import__("os").environ.get("CUDA_VISIBLE_DEVICES", "unset") +
                        "); use --device cpu")
    if index >= visible:
        raise UserError(f"--device {spec}: only {visible} CUDA device(s) visible (cuda:0..cuda:{visible - 1})")
    raise UserError(f"--device {spec}: training and acting on CUDA are not implemented yet (the issue "
                    "'Accelerators and scale-out'); use --device cpu")
