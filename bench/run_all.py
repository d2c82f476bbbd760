"""Run every benchmark in this folder, one after another (they share two cores: never in parallel).

.venv/bin/python bench/run_all.py [names...]     e.g. `run_all.py selector syncer`
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Scripts that take a mode, and the runs `make bench` does of them; they build network namespaces, so they run
# under the shared lock that keeps namespace suites and benches from overlapping.
MODES = {"bench_felix": [["latency"], ["latency", "--datastore", "etcd"], ["coldstart"], ["throughput"]],
         # no namespaces, but four allocator processes + etcd want the cores the lock keeps quiet
         "bench_ipam": [[]],
         "bench_network": [["latency"], ["block"], ["scale"], ["throughput"]],
         "bench_flowlogs": [["throughput"], ["flood"], ["flood", "--policies", "20"]],
         "bench_openstack": [["resync"], ["resync", "--backend", "etcd"], ["rule"], ["boot"]],
         "bench_explain": [[], ["--backend", "etcd"]]}
LOCK = ["flock", "/tmp/calico-netns.lock"]


def main() -> int:
    wanted = set(sys.argv[1:])
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not wanted or p.stem.removeprefix("bench_") in wanted)
    failed = 0
    for script in scripts:
        for args in MODES.get(script.stem, [[]]):
            print(f"\n== {' '.join([script.name, *args])} ==", flush=True)
            argv = [sys.executable, str(script), *args]
            if script.stem in MODES:
                argv = [*LOCK, *argv]
            failed += subprocess.run(argv, check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
