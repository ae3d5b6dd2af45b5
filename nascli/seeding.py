"""Seeds for pieces of work, fixed by the run seed and the work's key rather than by the order work is done."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, key: str) -> int:
    """A seed for one piece of work: fixed by the run seed and the work's key, not by its order."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16)
