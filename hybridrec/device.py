"""Device choice and seeding, done once and passed down."""
from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

log = logging.getLogger(__name__)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, or CUDA when present and CPU otherwise.

    Args:
        device: ``"auto"``/``None`` for automatic, else anything ``torch.device`` accepts.
    """
    if device is None or str(device) == "auto":
        chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        chosen = torch.device(device)
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here")
    log.debug("Using device %s", chosen)
    return chosen


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded the same."""
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
