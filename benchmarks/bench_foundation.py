"""Foundation figures: cold import + driver listing, and rebuilding a runtime env.

Run: python benchmarks/bench_foundation.py
Targets (issue 2): `import raydrive; raydrive.available_drivers()` imports no Ray and takes
<= 0.3 s; building the runtime env a second time for an unchanged 1,000-file working dir <= 5 ms.
Raw Ray is measured in the same run for scale (`import ray`, and Ray's own directory hashing).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cold(code: str, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    baseline = cold("pass")
    listing = cold("import sys, raydrive; raydrive.available_drivers(); assert 'ray' not in sys.modules")
    import_ray = cold("import ray")
    print(f"python startup                         {baseline * 1000:7.1f} ms")
    print(
        f"import raydrive + available_drivers()  {listing * 1000:7.1f} ms  (target <= 300 ms: "
        f"{'met' if listing <= 0.3 else 'MISSED'}); no Ray imported"
    )
    print(
        f"import ray (for scale)                 {import_ray * 1000:7.1f} ms  "
        f"ratio raydrive/ray = {listing / import_ray:.2f}x"
    )

    from raydrive.core.options import RayOptions
    from raydrive.core.runtime_env import RuntimeEnvBuilder

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(1000):
            sub = root / f"pkg{i % 20}"
            sub.mkdir(exist_ok=True)
            (sub / f"mod{i}.py").write_text(f"X = {i}\n" * 20)
        (root / "requirements.txt").write_text("numpy\n")
        builder = RuntimeEnvBuilder(RayOptions(working_dir=root))
        start = time.perf_counter()
        first = builder.build(package=True)
        first_ms = (time.perf_counter() - start) * 1000
        again = []
        for _ in range(20):
            start = time.perf_counter()
            builder.build(package=True)
            again.append((time.perf_counter() - start) * 1000)
        second_ms = statistics.median(again)
        from ray._private.runtime_env.packaging import get_uri_for_directory

        start = time.perf_counter()
        get_uri_for_directory(str(root), include_gitignore=False, excludes=[])
        ray_ms = (time.perf_counter() - start) * 1000
    print(f"runtime env, first build (zip 1,000 files)   {first_ms:7.1f} ms  ({first.package})")
    print(
        f"runtime env, unchanged rebuild (median of 20) {second_ms:7.2f} ms  (target <= 5 ms: "
        f"{'met' if second_ms <= 5 else 'MISSED'})"
    )
    print(
        f"Ray's get_uri_for_directory on the same dir   {ray_ms:7.1f} ms  "
        f"ratio rebuild/ray = {second_ms / ray_ms:.3f}x"
    )


if __name__ == "__main__":
    main()
