"""An `Explanation` for people: a tree on the terminal (rich). JSON is `Explanation.to_json`."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from calico.explain.trace import Explanation, PolicyTrace, RuleTrace, StageTrace, Verdict

_STYLE = {"allow": "green", "deny": "red", "pass": "yellow", "end-deny": "red", "end-pass": "yellow",
          "no-match": "dim", "skipped": "dim", "missing": "red", "none": "dim"}


def _style(outcome: str) -> str:
    return _STYLE.get(outcome, "")


def _rule_text(rule: dict[str, Any] | None) -> str:
    if rule is None:
        return ""
    return " " + escape(json.dumps({k: v for k, v in rule.items() if k != "action"}, separators=(",", ":")))


def _counted(r: RuleTrace) -> str:
    return "" if r.packets is None else f" [cyan]\\[{r.packets} pkts, {r.bytes} B][/]"


def _policy(node: Tree, p: PolicyTrace) -> None:
    hosts = "" if p.counted_on is None else f" (counters from {len(p.counted_on)} host(s))"
    branch = node.add(f"{p.kind} [bold]{p.name}[/]: [{_style(p.outcome)}]{p.outcome}[/]{hosts}")
    for r in p.rules:
        index = "rule ?" if r.index is None else f"rule {r.index}"
        if r.matched:
            branch.add(f"[bold]{index}[/] {r.action}{_rule_text(r.rule)}: [bold]matched[/]{_counted(r)}")
        else:
            why = escape("; ".join(r.why_not))
            branch.add(f"[dim]{index} {r.action}{_rule_text(r.rule)}: no ({why})[/]{_counted(r)}")


def _stage(node: Tree, s: StageTrace) -> None:
    where = f" on {s.node}" if s.node else ""
    kind = "" if s.kind == "normal" else f"{s.kind} "
    verdict = f"[{_style(s.verdict)}]{s.verdict}[/]"
    branch = node.add(f"{kind}{s.stage} of [bold]{s.endpoint}[/]{where}: {verdict} ({s.reason})")
    for check in s.checks:
        branch.add(f"[dim]{check}[/]")
    for t in s.tiers:
        # Untracked and preDNAT tiers have no default action: what no rule decided goes on.
        default = "goes on" if s.kind in ("untracked", "preDNAT") else t.default_action
        tier = branch.add(f"tier [bold]{t.name}[/] (default {default}): [{_style(t.outcome)}]{t.outcome}[/]")
        for p in t.policies:
            _policy(tier, p)
    if s.profiles:
        profiles = branch.add("profiles")
        for p in s.profiles:
            _policy(profiles, p)


def _verdict(title: str, v: Verdict) -> Tree:
    tree = Tree(f"{title}: [bold {_style(v.verdict)}]{v.verdict.upper()}[/] ({v.reason})")
    for s in v.stages:
        _stage(tree, s)
    return tree


def print_explanation(e: Explanation, console: Console) -> None:
    console.print(f"[bold]{e.flow}[/]  ({e.source} -> {e.destination}, datastore revision {e.revision})")
    console.print(_verdict("verdict", e.enforced))
    if e.pending is not None:
        console.print(_verdict("pending (staged policies in force)", e.pending))
    for note in e.notes:
        console.print(f"[dim]note: {note}[/]")
