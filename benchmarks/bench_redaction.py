"""The masker's cost: ``redact`` of a 1 MiB params document, the new rule against the previous one.

The previous implementation is loaded from git (``git show 002cd16:raydrive/core/redaction.py``)
into a module of its own and timed in the same run on the same document, so the figure is a
ratio that does not depend on the machine. Run from the repository root::

    python benchmarks/bench_redaction.py            # 1 MiB, best of 15 rounds each, taking turns
    python benchmarks/bench_redaction.py --mib 4 --repeat 5

The document is what an ML action's params and results look like: generation settings
(``max_tokens``, ``temperature``...), prompts with URLs and ``name=value`` text, metric curves,
a Kubernetes-style env list and a few real secrets; and 1 MiB of log text (``redact_text``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raydrive.core import redaction  # noqa: E402

BASELINE = "002cd16"


def previous_module(commit: str = BASELINE) -> types.ModuleType:
    """``raydrive/core/redaction.py`` as it was at ``commit``, as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{commit}:raydrive/core/redaction.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("raydrive_previous_redaction")
    exec(compile(source, f"{commit}:raydrive/core/redaction.py", "exec"), module.__dict__)
    return module


def record(i: int) -> dict[str, Any]:
    return {
        "id": f"sample-{i:06d}",
        "prompt": f"Summarise document {i} from https://data.example.org/docs/{i}.txt in 3 lines",
        "generation": {
            "max_tokens": 512,
            "max_new_tokens": 256,
            "temperature": 0.7,
            "top_p": 0.95,
            "stop": ["\n\n", "###"],
            "pad_token_id": 0,
            "eos_token_id": 2,
        },
        "usage": {"prompt_tokens": 30 + i % 7, "completion_tokens": 90, "total_tokens": 120 + i % 7},
        "metrics": {"loss": [0.5 - j * 0.01 for j in range(8)], "tokens_per_second": 31.5 + i % 3},
        "notes": f"step: {i} lr=0.0003 batch_size=32 run at 2026-12-08T04:00:{i % 60:02d}Z",
        "env": [{"name": "HF_HOME", "value": "/cache/hf"}, {"name": "HF_TOKEN", "value": f"hf_secret{i}"}],
        "storage": {"url": f"s3://bucket/run/{i}", "db": f"postgresql://u:pw{i}@db:5432/app"},
        "api_key": f"sk-{i:032d}",
    }


def document(mib: float) -> dict[str, Any]:
    target = int(mib * 1024 * 1024)
    records: list[dict[str, Any]] = []
    size = 0
    while size < target:
        item = record(len(records))
        records.append(item)
        size += len(json.dumps(item)) + 2
    return {"dataset": "bench", "records": records}


def log_text(mib: float) -> str:
    """A log of an ML run as one text (what a stored error or log field holds)."""
    lines = []
    size, i = 0, 0
    while size < mib * 1024 * 1024:
        line = (
            f"2026-12-08T04:00:{i % 60:02d}Z INFO step: {i} loss: {0.5 - i * 1e-6:.4f} lr=0.0003 "
            f"max_tokens=512 tokens_per_second={31.5 + i % 3} url=https://data.example.org/{i}"
        )
        if i % 50 == 0:
            line += f" connect postgresql://u:pw{i}@db:5432/app password=hunter{i}"
        lines.append(line)
        size += len(line) + 1
        i += 1
    return "\n".join(lines)


def once(func: Any, doc: Any) -> float:
    start = time.perf_counter()
    func(doc)
    return time.perf_counter() - start


def compare(name: str, new: Any, old: Any, doc: Any, repeat: int) -> float:
    """The best of ``repeat`` rounds of each, the two taking turns (a busy machine slows both)."""
    new(doc), old(doc)  # warm the name caches, as a long-running process has them
    new_s = old_s = float("inf")
    for _ in range(repeat):
        old_s = min(old_s, once(old, doc))
        new_s = min(new_s, once(new, doc))
    print(f"{name}: previous ({BASELINE}) {old_s * 1000:.1f} ms   new {new_s * 1000:.1f} ms   "
          f"new / previous = {new_s / old_s:.2f}x")  # fmt: skip
    return new_s / old_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    old = previous_module()
    doc = document(args.mib)
    size = len(json.dumps(doc)) / 1024 / 1024
    print(f"params document: {size:.2f} MiB of JSON, {len(doc['records'])} records")
    compare("redact(params document)", redaction.redact, old.redact, doc, args.repeat)
    text = log_text(args.mib)
    print(f"log text: {len(text) / 1024 / 1024:.2f} MiB")
    compare("redact_text(log text)", redaction.redact_text, old.redact_text, text, args.repeat)
    print("(below 1.00x: the new rule is faster)")


if __name__ == "__main__":
    main()
