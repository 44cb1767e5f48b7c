"""What crosses between a submitter and an actor of the shared Ray layer, packed and unpacked here only.

The hot messages (and the results that come back for them, :func:`pack_result`) travel as one
``bytes`` (:func:`pack_values`: a stdlib pickle): Ray passes bytes through almost untouched, where
a list or dict goes through its serializer (msgpack, with cloudpickle for what msgpack lacks); on
a warm actor call that is about 25 us less of the caller's CPU per round trip, both ways (measured
by ``benchmarks/bench_ray_drivers.py``). What stdlib pickle would get wrong (anything of the
submitter's ``__main__``, which it pickles by reference; Ray's own objects, such as an ObjectRef in
the params, whose borrowers only Ray's reducers register) or cannot take (a local class) travels
as a list, for Ray's serializer, as before. ``target`` is always an entrypoint string
``module.Class`` when the class can be imported by name, else the class itself (pickled by value,
e.g. a class defined in ``__main__``). Secrets travel only in these messages (never in a runtime
env, which Ray's state API and the dashboard show).

Each driver's own messages are in its package's ``wire`` module (``ray_job.wire``,
``ray_jobs_api.wire``, ``ray_pipeline.wire``); this one holds what they share:
:data:`NAMESPACE`, the packing of values and results, and :class:`ActionCall` (one call on the
action actor, :class:`~raydrive.drivers.ray.worker.ActionActor`).

Kept light (no Ray, httpx or pydantic import): cluster-side entries import it before anything else.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NAMESPACE",
    "ActionCall",
    "pack_result",
    "pack_values",
    "unpack_result",
    "unpack_values",
]

NAMESPACE = "raydrive"
"""Ray namespace of every named actor raydrive creates."""


def pack_values(*values: Any) -> bytes | list[Any]:
    """``values`` as one ``bytes`` (stdlib pickle) for Ray's fast path, or as a list where stdlib
    pickle would not carry them faithfully; :func:`unpack_values` reads either."""
    try:
        data = pickle.dumps(values, protocol=5)
    except Exception:  # a local class, a lambda...: Ray's cloudpickle takes them by value
        return list(values)
    # Ray's serializer must see two kinds of value (a string spelling either name merely takes
    # the same, slower, correct path):
    # - anything of the submitter's __main__: stdlib pickle names it by reference, and a worker's
    #   __main__ lacks it (cloudpickle takes it by value);
    # - Ray's own objects (an ObjectRef, an actor handle in the params): Ray's reducers register
    #   the worker as a borrower, stdlib pickle would keep only the id.
    return list(values) if _NEEDS_RAY_SERIALIZER.search(data) else data


# A module name as pickle protocol 5 writes it (SHORT_BINUNICODE, then MEMOIZE) for a global.
_NEEDS_RAY_SERIALIZER = re.compile(rb"\x8c.(?:__main__|ray(?:\.[\w.]+)?)\x94", re.DOTALL)


def unpack_values(data: bytes | Sequence[Any]) -> Sequence[Any]:
    """The values :func:`pack_values` packed (a bytes-like object, or the list form)."""
    # Any bytes-like: a large object may come out of Ray's object store as a buffer, not bytes.
    return pickle.loads(data) if isinstance(data, (bytes, bytearray, memoryview)) else data


def pack_result(value: Any) -> bytes | list[Any]:
    """An action's result (JSON data) as it travels back from the actor or pooled task."""
    return pack_values(value)


def unpack_result(data: bytes | Sequence[Any]) -> Any:
    """The result :func:`pack_result` packed."""
    return unpack_values(data)[0]


@dataclass(frozen=True, slots=True)
class ActionCall:
    """One call on the action actor: ray-actor's persistent actor, or ray-job's fresh actor per job."""

    target: Any
    params: Any = field(repr=False)
    job_id: str

    def pack(self) -> bytes | list[Any]:
        return pack_values(self.target, self.params, self.job_id)

    @classmethod
    def unpack(cls, data: bytes | Sequence[Any]) -> ActionCall:
        target, params, job_id = unpack_values(data)
        return cls(target, params, job_id)
