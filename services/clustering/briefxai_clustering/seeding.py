"""One request seed (uint64) -> an independent 32-bit ``random_state`` per pipeline stage.

scikit-learn and umap-learn take seeds below 2**32; ``numpy.random.SeedSequence`` mixes the full 64-bit
request seed with the stage name, so seeds that differ only above bit 32 still give different results
and the stages do not share one random stream.
"""

from __future__ import annotations

import zlib

import numpy as np


def stage_seed(seed: int, stage: str) -> int:
    """A deterministic 32-bit seed for ``stage`` derived from the 64-bit request ``seed``."""
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be a uint64, got {seed}")
    words = [seed & 0xFFFFFFFF, seed >> 32, zlib.crc32(stage.encode())]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0])
