"""Safe checkpoint loading: tensors only, never code, and only tensors that hold usable numbers.

``torch.load(..., weights_only=True)`` refuses any pickle that would construct arbitrary objects
(and thus run code); safetensors files hold tensors by construction. The format is recognised by
content, not by name: a safetensors file starts with an 8-byte little-endian header length ``n``
followed by ``n`` bytes of JSON (``{...}``), so a safetensors file named ``.pth`` loads, and a
pickle named ``.safetensors`` is refused. Every state dict is then checked: meta tensors (no
values), sparse tensors, and NaN/Inf in floating-point tensors are refused with the keys named;
casts to the architecture's dtypes (``float16`` weights into a ``float32`` model) are said on one
line (logger ``repscope.checkpoints``). Anything refused is a :class:`CheckpointError` naming the fix.
"""

from __future__ import annotations

import logging
import os
import pickle
import stat
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "params")
_SAFETENSORS_MAX_HEADER = 100 << 20  # the safetensors library's own limit on the JSON header
_FORMAT_WORDS = {"zip": "a torch.save zip archive, i.e. a pickle", "pickle": "a legacy torch pickle",
                 "unknown": "no format repscope recognises"}
log = logging.getLogger(__name__)


def _keys(keys: list[str]) -> str:
    """``a, b, c (+4 more)``."""
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def checkpoint_format(path: str | os.PathLike) -> str:
    """``"safetensors"``, ``"zip"`` (torch.save's default), ``"pickle"`` (legacy torch.save) or ``"unknown"``, by content."""
    with open(path, "rb") as f:
        head = f.read(9)
        size = os.fstat(f.fileno()).st_size
    if len(head) == 9:
        (length,) = struct.unpack("<Q", head[:8])
        if 2 <= length <= min(size - 8, _SAFETENSORS_MAX_HEADER) and head[8:9] == b"{":
            return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle's PROTO opcode and version
        return "pickle"
    return "unknown"


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (``.pth``/``.pt``/``.bin`` via ``weights_only`` or ``.safetensors``).

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) and DataParallel's ``module.``
    prefix are removed. Returns a name -> tensor mapping on the CPU.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist. Check the --weights path.")
    if not stat.S_ISREG(path.stat().st_mode):
        raise CheckpointError(f"checkpoint '{path}' is not a regular file (a folder, FIFO or device). "
                              "Pass the checkpoint file itself.")
    try:
        kind = checkpoint_format(path)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint '{path}': {err.strerror}. Check its permissions.") from None
    if kind == "safetensors":
        return check_state_dict(_load_safetensors(path), path)
    if path.suffix == ".safetensors":
        raise CheckpointError(
            f"'{path}' is named .safetensors but is not a safetensors file (it holds {_FORMAT_WORDS[kind]}). "
            "Re-save it with safetensors.torch.save_file, or rename a torch checkpoint to .pth."
        )
    return check_state_dict(_load_torch(path), path)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file as a name -> tensor dict (on the CPU)."""
    try:
        from safetensors.torch import load_file
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read safetensors checkpoint '{path}' ({first}). Re-save it.") from None


def _load_torch(path: Path) -> dict[str, torch.Tensor]:
    """A torch checkpoint read with ``weights_only=True``, unwrapped to its state dict."""
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


def check_state_dict(state: Mapping[str, torch.Tensor], source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Refuse meta or sparse tensors and NaN/Inf values (naming the keys); return ``state`` as a dict."""
    meta = [k for k, v in state.items() if v.is_meta]
    if meta:
        raise CheckpointError(f"checkpoint '{source}' holds {len(meta)} meta tensors without values ({_keys(meta)}). "
                              "Save the weights after they were materialised (model.to('cpu')).")
    sparse = [k for k, v in state.items() if v.layout != torch.strided]
    if sparse:
        raise CheckpointError(f"checkpoint '{source}' holds {len(sparse)} sparse tensors ({_keys(sparse)}). "
                              "Save dense weights (tensor.to_dense()).")
    bad = [k for k, v in state.items() if (v.is_floating_point() or v.is_complex()) and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint '{source}' holds NaN or Inf in {len(bad)} tensors ({_keys(bad)}). "
                              "Use a checkpoint saved before training diverged.")
    return dict(state)


def _report_casts(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], pairs, source: str) -> None:
    """Say on one line which tensors are cast to the architecture's dtypes (``pairs``: own name, state name)."""
    casts: dict[tuple[torch.dtype, torch.dtype], list[str]] = {}
    for name, src in pairs:
        if own[name].dtype != state[src].dtype:
            casts.setdefault((state[src].dtype, own[name].dtype), []).append(src)
    if casts:
        parts = [f"{len(keys)} {str(a).removeprefix('torch.')} -> {str(b).removeprefix('torch.')} ({_keys(keys)})"
                 for (a, b), keys in casts.items()]
        log.warning("repscope: note: checkpoint %s: tensors cast to the architecture's dtypes: %s.",
                    source, "; ".join(parts))


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
                parts.append(f"{len(keys)} {label} keys: {_keys(keys)}")
        raise CheckpointError(
            f"checkpoint {source} does not fit the architecture: {'; '.join(parts)}. "
            "Pass weights saved from the same architecture."
        )
    _report_casts(own, state, [(k, k) for k in own], source)
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
    _report_casts(own, state, list(zip(own, state)), source)
    module.load_state_dict(mapped, strict=True)
