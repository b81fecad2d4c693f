"""Counter-based randomness: every draw is a pure function of (seed, series name, counter).

Nothing here keeps state between draws, so the simulator can recompute any step or any
agent's decision after a restart without replaying what came before it. A series' step draws
come from BLAKE2b keyed by (seed, series) over the step number (a counter-based generator in the
manner of Philox); agents get a `random.Random` seeded by (seed, agent, bucket) instead, because
their decisions need a varying number of draws.
"""

from __future__ import annotations

import hashlib
import random
import struct

_FOUR_WORDS = struct.Struct("<4Q")
_COUNTER = struct.Struct("<Q")
_UNIT = 2.0**-53


class StepDraws:
    """Four uniforms in [0, 1) per step of one series; `at(k)` is the same for the same k."""

    __slots__ = ("_keyed",)

    def __init__(self, seed: int, series: str) -> None:
        key = hashlib.blake2b(f"{seed}/{series}".encode(), digest_size=32).digest()
        self._keyed = hashlib.blake2b(key=key, digest_size=32)

    def at(self, step: int) -> tuple[float, float, float, float]:
        hashed = self._keyed.copy()
        hashed.update(_COUNTER.pack(step))
        a, b, c, d = _FOUR_WORDS.unpack(hashed.digest())
        return (a >> 11) * _UNIT, (b >> 11) * _UNIT, (c >> 11) * _UNIT, (d >> 11) * _UNIT


def generator(seed: int, *names: object) -> random.Random:
    """A `random.Random` for one (seed, names...) key: the same key gives the same draws.

    String seeds are hashed with SHA-512 by `random` itself, so this does not depend on
    PYTHONHASHSEED or the process.
    """
    return random.Random("/".join([str(seed), *map(str, names)]))
