"""Device resolution: ``--device {cpu,cuda,auto}`` turned into a ``torch.device`` or a clear error."""

from __future__ import annotations

import torch

from .errors import DeviceError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device`` into a usable device.

    ``"auto"`` (or ``None``) picks CUDA when available, else the CPU. Asking for CUDA on a machine
    without it raises :class:`DeviceError` instead of failing later inside torch.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device '{device}'. Use --device cpu, cuda or auto.") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda was asked but CUDA is not available here. Use --device cpu (or auto).")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device '{device}' does not exist: {torch.cuda.device_count()} CUDA device(s). Use --device cuda:0."
            )
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"device '{device}' (Apple MPS) is not available here. Use --device cpu (or auto).")
    elif resolved.type != "cpu":
        raise DeviceError(f"unsupported device '{device}'. Use --device cpu, cuda or auto.")
    return resolved
