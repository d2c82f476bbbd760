"""Selector benchmark: evaluation rate, and LabelIndex build and incremental-update cost.

Run: `.venv/bin/python bench/bench_selector.py [--json] [--seed N]` (under a minute).
Goals: >= 200k evaluations/s for a typical selector; median incremental endpoint update <= 50 us
with 10k endpoints and 1k selectors.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
from collections.abc import Callable

from calico.selector import parse
from calico.selector.index import LabelIndex

EVAL_GOAL = 200_000
UPDATE_GOAL_US = 50.0
N_ENDPOINTS = 10_000
N_SELECTORS = 1_000
N_UPDATES = 2_000
N_APPS = 200
N_NAMESPACES = 50
ROLES = ["frontend", "backend", "db", "cache", "worker"]
ENVS = ["prod", "staging", "dev"]

EVAL_CASES = {
    "typical": 'app == "web" && tier in {"a", "b"} && !has(deprecated)',
    "equality": 'app == "web"',
    "or/not/strings": '(env == "dev" || role == "db") && !(zone in {"z1", "z2"}) && app starts with "w"',
    "all()": "all()",
}
EVAL_LABELS = {"app": "web", "tier": "a", "env": "prod", "zone": "z3", "version": "v1"}


def bench_eval(seconds: float = 0.3) -> dict[str, float]:
    """Evaluations per second for each selector (best of three timed runs)."""
    results = {}
    for name, text in EVAL_CASES.items():
        evaluate = parse(text).evaluate
        labels = EVAL_LABELS
        n = 50_000
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            done = 0
            while time.perf_counter() - start < seconds:
                for _ in range(n):
                    evaluate(labels)
                done += n
            best = max(best, done / (time.perf_counter() - start))
        results[name] = best
    return results


def endpoint_labels(rng: random.Random, i: int) -> dict[str, str]:
    labels = {
        "app": f"app{rng.randrange(N_APPS)}",
        "role": rng.choice(ROLES),
        "env": rng.choice(ENVS),
        "version": f"v{rng.randrange(5)}",
        "zone": f"z{rng.randrange(3)}",
    }
    if rng.random() < 0.05:
        labels["canary"] = "true"
    if rng.random() < 0.02:
        labels["deprecated"] = "true"
    return labels


def selector_text(rng: random.Random, i: int) -> str:
    app = f"app{rng.randrange(N_APPS)}"
    roll = rng.random()
    if roll < 0.70:
        return f'app == "{app}" && role == "{rng.choice(ROLES)}"'
    if roll < 0.80:
        if rng.random() < 0.5:
            return f'has(canary) && env == "{rng.choice(ENVS)}"'
        return f'app == "{app}" && has(canary)'
    if roll < 0.95:
        apps = ", ".join(f'"app{rng.randrange(N_APPS)}"' for _ in range(3))
        return f'app in {{{apps}}} && env != "dev"'
    # ~5% with no required label: always evaluated for new endpoints.
    return rng.choice(
        [
            f"!has(quarantine{i})",
            f'role != "db" && !has(deprecated) && zone != "z{i % 3}"',
            f'app == "{app}" || !has(ns)',
        ]
    )


def bench_index(seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    events = [0]

    def count(sel_id: object, item_id: object) -> None:
        events[0] += 1

    endpoints = [endpoint_labels(rng, i) for i in range(N_ENDPOINTS)]
    parents = [[f"ns{rng.randrange(N_NAMESPACES)}"] for _ in range(N_ENDPOINTS)]
    selectors = [parse(selector_text(rng, i)) for i in range(N_SELECTORS)]
    ns_labels = {f"ns{k}": {"ns": f"ns{k}", "team": f"t{k % 7}"} for k in range(N_NAMESPACES)}

    def build(selectors_first: bool) -> tuple[LabelIndex, float]:
        idx = LabelIndex(count, count)
        start = time.perf_counter()
        for ns, labels in ns_labels.items():
            idx.update_parent_labels(ns, labels)

        def add_selectors() -> None:
            for i, selector in enumerate(selectors):
                idx.update_selector(i, selector)

        def add_endpoints() -> None:
            for i, labels in enumerate(endpoints):
                idx.update_labels(i, labels, parents[i])

        steps: list[Callable[[], None]] = [add_selectors, add_endpoints]
        for step in steps if selectors_first else steps[::-1]:
            step()
        return idx, time.perf_counter() - start

    _, build_sel_first = build(selectors_first=True)
    idx, build_items_first = build(selectors_first=False)

    # One label change per update, on random endpoints: the agent's steady state.
    timings = []
    evaluations_before = idx.evaluations
    gc.disable()  # keep collector pauses out of per-call timings
    try:
        for _ in range(N_UPDATES):
            i = rng.randrange(N_ENDPOINTS)
            labels = dict(endpoints[i])
            change = rng.random()
            if change < 0.4:
                labels["version"] = f"v{rng.randrange(5)}"
            elif change < 0.7:
                labels["role"] = rng.choice(ROLES)
            elif change < 0.9:
                labels["app"] = f"app{rng.randrange(N_APPS)}"
            elif "canary" in labels:
                del labels["canary"]
            else:
                labels["canary"] = "true"
            endpoints[i] = labels
            start = time.perf_counter_ns()
            idx.update_labels(i, labels, parents[i])
            timings.append((time.perf_counter_ns() - start) / 1000)
    finally:
        gc.enable()
    timings.sort()
    evaluations_per_update = (idx.evaluations - evaluations_before) / N_UPDATES

    # Selector churn: replace 200 selectors with fresh ones.
    sel_timings = []
    for _ in range(200):
        sid = rng.randrange(N_SELECTORS)
        start = time.perf_counter_ns()
        idx.update_selector(sid, parse(selector_text(rng, sid)))
        sel_timings.append((time.perf_counter_ns() - start) / 1000)
    sel_timings.sort()

    matches = sum(len(idx.matching_items(s)) for s in range(N_SELECTORS))
    return {
        "build_s_selectors_first": build_sel_first,
        "build_s_endpoints_first": build_items_first,
        "update_median_us": statistics.median(timings),
        "update_p99_us": timings[int(len(timings) * 0.99) - 1],
        "update_max_us": timings[-1],
        "evaluations_per_update": evaluations_per_update,
        "selector_update_median_us": statistics.median(sel_timings),
        "selector_update_p99_us": sel_timings[int(len(sel_timings) * 0.99) - 1],
        "total_matches": matches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    evals = bench_eval()
    index = bench_index(args.seed)
    ok = evals["typical"] >= EVAL_GOAL and index["update_median_us"] <= UPDATE_GOAL_US
    if args.json:
        print(json.dumps({"evaluations_per_s": evals, "label_index": index, "goals_met": ok}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"selector benchmark ({N_ENDPOINTS} endpoints x {N_SELECTORS} selectors)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("goal", justify="right")
    for name, rate in evals.items():
        goal = f">= {EVAL_GOAL:,}/s" if name == "typical" else ""
        table.add_row(f"evaluate: {name}", f"{rate:,.0f}/s", goal)
    table.add_row("index build, selectors first", f"{index['build_s_selectors_first']:.2f} s", "")
    table.add_row("index build, endpoints first", f"{index['build_s_endpoints_first']:.2f} s", "")
    table.add_row("endpoint update, median", f"{index['update_median_us']:.1f} us", f"<= {UPDATE_GOAL_US:g} us")
    table.add_row("endpoint update, p99", f"{index['update_p99_us']:.1f} us", "")
    table.add_row("endpoint update, max", f"{index['update_max_us']:.1f} us", "")
    table.add_row("evaluations per endpoint update", f"{index['evaluations_per_update']:.1f}", "")
    table.add_row("selector replace, median", f"{index['selector_update_median_us']:.1f} us", "")
    table.add_row("selector replace, p99", f"{index['selector_update_p99_us']:.1f} us", "")
    table.add_row("total matches", f"{index['total_matches']:,}", "")
    Console().print(table)
    print("goals met" if ok else "GOALS NOT MET")


if __name__ == "__main__":
    main()
