"""Reading safetensors files into aligned tensors (runs, checkpoints, node features, saved
baselines)."""
from __future__ import annotations

import os

from safetensors import safe_open
from torch import Tensor


def read_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Every tensor of the safetensors file ``path``, and its metadata (``{}`` without).

    The tensors are copies: one read from the file may sit off the 64-byte alignment of
    torch's allocator, and BLAS then takes another kernel path and rounds differently, so a
    saved and reloaded model would not score bit for bit as before."""
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k).clone() for k in f.keys()}, f.metadata() or {}
