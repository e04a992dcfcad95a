"""Safe checkpoint loading: tensors only, never code.

``torch.load(..., weights_only=True)`` refuses any pickle that would construct arbitrary objects
(and thus run code); ``.safetensors`` files hold tensors by construction. Anything refused is
reported as a :class:`CheckpointError` naming the fix.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "params")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (``.pth``/``.pt``/``.bin`` via ``weights_only`` or ``.safetensors``).

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) and DataParallel's ``module.``
    prefix are removed. Returns a name -> tensor mapping on the CPU.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist. Check the --weights path.")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read safetensors checkpoint '{path}': {err}. Re-save it.") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol notices; refusal is handled below
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"refused to load '{path}': it contains pickled objects beyond tensors, which could run code. "
            "Re-save it as a plain state dict (torch.save(model.state_dict(), f)) or as .safetensors."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint '{path}' ({first}). Is it a complete torch file?") from None
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Find the name -> tensor mapping inside a loaded checkpoint object."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"'{path}' holds no state dict (name -> tensor). Save model.state_dict().")
    prefix = "module."
    if all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix):]: v for k, v in obj.items()}
    return dict(obj)


def apply_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` strictly; missing/unexpected keys and shape mismatches are named."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or extra or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)):
            if keys:
                shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
                parts.append(f"{len(keys)} {label} keys: {shown}")
        raise CheckpointError(
            f"checkpoint {source} does not fit the architecture: {'; '.join(parts)}. "
            "Pass weights saved from the same architecture."
        )
    module.load_state_dict(state, strict=True)


def load_by_position(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state``'s tensors into ``module`` in order (names may differ), checking every shape."""
    own = module.state_dict()
    if len(own) != len(state):
        raise CheckpointError(f"{source} has {len(state)} tensors, the architecture {len(own)}. Reinstall the package.")
    mapped = {}
    for (name, target), (src_name, tensor) in zip(own.items(), state.items()):
        if tuple(target.shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: tensor '{src_name}' {tuple(tensor.shape)} does not fit '{name}' {tuple(target.shape)}."
            )
        mapped[name] = tensor
    module.load_state_dict(mapped, strict=True)
