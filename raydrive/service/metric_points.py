"""Metric history of a run: the points its progress reports carry, and how the page thins them.

An action reports metrics with ``set_metrics({"loss": 0.3}, step=12)``; the run's progress entry
keeps only the latest values (and ``step``). Every change of a run is compared with the run before
it (:func:`reported_points`), and each numeric metric whose value or step changed becomes one
point ``(action, key, step, value)`` that the store keeps for the run's whole life, so the page
and ``GET /api/v1/runs/{id}/metrics`` can draw the curve, not just its last value.

A metric reported without a numeric step (``set_metrics`` with no step, or ``log_metric``, whose
``category`` lands in ``step``) is placed at the run's event number: the order it was reported in,
as W&B's implicit ``_step`` counts ``log`` calls. Two points of one key at one step keep the later
value (a repeated report replaces, as in W&B and MLflow).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from pydantic import BaseModel

from raydrive.service.models import MAX_INT, Run

__all__ = [
    "MAX_KEY_LENGTH",
    "MetricPoint",
    "MetricSeries",
    "RunMetrics",
    "downsample",
    "reported_points",
    "step_of",
    "thinned",
]

#: Longer metric keys are not charted (they still show in the run's latest metrics).
MAX_KEY_LENGTH = 512


class MetricPoint(NamedTuple):
    """One reported value of one metric of one action of a run."""

    action: str
    key: str
    step: int
    value: float


def step_of(raw: Any, fallback: int) -> int:
    """The integer step of a reported ``step`` value, or ``fallback`` when it is not a number."""
    if isinstance(raw, bool):
        return fallback
    if isinstance(raw, int):
        step = raw
    elif isinstance(raw, float) and raw.is_integer():
        step = int(raw)
    elif isinstance(raw, str) and raw.strip().lstrip("-").isdigit() and len(raw) < 20:
        step = int(raw.strip())
    else:
        return fallback
    return step if -MAX_INT <= step <= MAX_INT else fallback


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def reported_points(old: Run, new: Run, seq: int) -> list[MetricPoint]:
    """The points the change from ``old`` to ``new`` (event number ``seq``) reports.

    Only numeric, finite values count; a metric whose value and step are unchanged (a report of
    progress only, which carries the action's last metrics again) adds nothing.
    """
    before = {entry.name: entry.metrics for entry in old.progress}
    points: list[MetricPoint] = []
    for entry in new.progress:
        metrics = entry.metrics
        previous = before.get(entry.name) or {}
        if not metrics or metrics == previous:
            continue
        same_step = metrics.get("step") == previous.get("step")
        step = step_of(metrics.get("step"), seq)
        for key, raw in metrics.items():
            if key == "step" or len(key) > MAX_KEY_LENGTH:
                continue
            value = _number(raw)
            if value is None or (same_step and key in previous and previous[key] == raw):
                continue
            points.append(MetricPoint(entry.name, key, step, value))
    return points


def downsample(steps: Sequence[int], values: list[float], max_points: int) -> tuple[list[int], list[float]]:
    """At most ``max_points`` points of a curve, keeping its shape: min and max per bucket.

    The curve is cut into ``max_points // 2`` buckets of consecutive points and each keeps its
    lowest and highest point, in step order (the M4 idea, as Plotly-resampler and Grafana do for
    line charts: no spike disappears, unlike taking every n-th point). The first and last points
    are always kept.
    """
    n = len(steps)
    if n <= max_points:
        return list(steps), list(values)
    buckets = max(1, (max_points - 2) // 2)
    keep = {0, n - 1}
    width = (n - 2) / buckets
    for b in range(buckets):
        lo = 1 + int(b * width)
        hi = min(n - 1, 1 + int((b + 1) * width))
        if lo >= hi:
            continue
        part = values[lo:hi]  # min, max and index run in C: a 10,000-point curve thins in ~1 ms
        keep.add(lo + part.index(min(part)))
        keep.add(lo + part.index(max(part)))
    order = sorted(keep)
    return [steps[i] for i in order], [values[i] for i in order]


class MetricSeries(BaseModel):
    """One metric of one action: its steps and values, in step order (columns, as charts take them).

    ``points`` is how many points the service holds for it (after ``since_step``, when given);
    ``downsampled`` says the answer carries fewer (thinned by :func:`downsample` to the
    ``max_points`` asked for).
    """

    action: str
    key: str
    steps: list[int]
    values: list[float]
    points: int
    downsampled: bool = False


class RunMetrics(BaseModel):
    """Answer of ``GET /api/v1/runs/{run_id}/metrics``."""

    run_id: str
    series: list[MetricSeries]


def thinned(series: MetricSeries, max_points: int | None) -> MetricSeries:
    """``series`` with at most ``max_points`` points (see :func:`downsample`); unchanged when it
    has no more than that, or ``max_points`` is None."""
    if max_points is None or len(series.steps) <= max_points:
        return series
    steps, values = downsample(series.steps, series.values, max_points)
    return series.model_copy(update={"steps": steps, "values": values, "downsampled": True})
