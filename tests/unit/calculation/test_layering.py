"""The calculation package's shape: stages import only leaf modules, the graph alone wires them, and each
stage's declared interface (a Protocol) is what the stage it feeds really offers."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import calico.calculation
from calico.calculation.active_rules import ActiveRules, RuleRenderer, RulesSink
from calico.calculation.endpoints import ItemSink, LocalEndpointSink
from calico.calculation.ipset_members import IPSetMembers
from calico.calculation.nodes import NodeSink, VTEPSink
from calico.calculation.policy_resolver import EndpointSink, PolicyRefs, PolicyResolver
from calico.calculation.pools import PoolSink
from calico.calculation.routes import RouteResolver, RouteSink
from calico.calculation.rule_scanner import RuleScanner, SetSink
from calico.calculation.sequencer import Sequencer

PACKAGE = Path(calico.calculation.__file__).parent
LEAVES = {"events", "types", "selectors"}
WIRING = {"graph"}


def _calculation_imports(path: Path) -> set[str]:
    """Every `calico.calculation.<module>` a module imports, wherever the import statement sits."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["calico", "calculation"] and len(parts) > 2 and (PACKAGE / f"{parts[2]}.py").exists():
                found.add(parts[2])
    return found


def _modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", _modules())
def test_stages_import_only_leaf_modules(module: str) -> None:
    imported = _calculation_imports(PACKAGE / f"{module}.py") - {module}
    if module in WIRING:
        return
    allowed = {"events"} if module in LEAVES else LEAVES
    assert imported <= allowed, f"{module} imports {sorted(imported - allowed)}: only the graph wires stages"


def test_no_type_checking_imports() -> None:
    # TYPE_CHECKING imports were how the old circle hid; the interfaces make them unnecessary.
    for module in _modules():
        assert "TYPE_CHECKING" not in (PACKAGE / f"{module}.py").read_text(), module


def _params(func: object) -> list[str]:
    return [p for p in inspect.signature(func).parameters if p != "self"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("interface", "implementation"),
    [
        (ItemSink, IPSetMembers),
        (LocalEndpointSink, PolicyResolver),
        (SetSink, IPSetMembers),
        (RuleRenderer, RuleScanner),
        (RulesSink, Sequencer),
        (PolicyRefs, ActiveRules),
        (EndpointSink, Sequencer),
        (PoolSink, Sequencer),
        (PoolSink, RouteResolver),
        (VTEPSink, Sequencer),
        (NodeSink, RouteResolver),
        (RouteSink, Sequencer),
    ],
)
def test_each_interface_is_what_the_fed_stage_offers(interface: type, implementation: type) -> None:
    members = {n: f for n, f in vars(interface).items() if inspect.isfunction(f) and not n.startswith("_")}
    assert members, interface
    for name, func in members.items():
        real = getattr(implementation, name, None)
        assert real is not None, f"{implementation.__name__} lacks {interface.__name__}.{name}"
        assert _params(real) == _params(func), f"{implementation.__name__}.{name} differs from {interface.__name__}"
