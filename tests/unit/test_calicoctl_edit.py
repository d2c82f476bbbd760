"""calicoctl's pure edits: JSON merge patch and label changes, and the get tables."""

from __future__ import annotations

import pytest

from calico.calicoctl.edit import LabelError, merge_patch, remove_label, set_label
from calico.calicoctl.tables import render


def test_merge_patch_rfc7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert merge_patch(target, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge_patch({"a": 1}, {"b": {"c": 2}}) == {"a": 1, "b": {"c": 2}}
    assert target == {"a": "b", "c": {"d": "e", "f": "g"}}  # input untouched


def test_labels() -> None:
    doc = {"metadata": {"name": "n", "labels": {"a": "1"}}}
    assert set_label(doc, "b", "2", overwrite=False)["metadata"]["labels"] == {"a": "1", "b": "2"}
    with pytest.raises(LabelError, match="--overwrite"):
        set_label(doc, "a", "2", overwrite=False)
    assert set_label(doc, "a", "2", overwrite=True)["metadata"]["labels"] == {"a": "2"}
    assert "labels" not in remove_label(doc, "a")["metadata"]
    with pytest.raises(LabelError, match="not present"):
        remove_label(doc, "zz")


def test_table_layout() -> None:
    docs = [
        {"metadata": {"name": "pool-a"}, "spec": {"cidr": "198.18.0.0/16", "nodeSelector": "all()"}},
        {"metadata": {"name": "p"}, "spec": {"cidr": "fd00::/64", "nodeSelector": "all()", "natOutgoing": True}},
    ]
    assert render("IPPool", docs, wide=False, namespaced_listing=False) == (
        "NAME     CIDR            SELECTOR\n"
        "pool-a   198.18.0.0/16   all()\n"
        "p        fd00::/64       all()\n"
    )
    wide = render("IPPool", docs, wide=True, namespaced_listing=False).splitlines()
    assert wide[0].split() == ["NAME", "CIDR", "SELECTOR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED", "DISABLEBGPEXPORT"]
    assert wide[2].split()[:4] == ["p", "fd00::/64", "all()", "true"]


def test_namespaced_listing_adds_namespace_column() -> None:
    docs = [{"metadata": {"name": "x", "namespace": "ns1"}, "spec": {}}]
    assert render("NetworkPolicy", docs, wide=False, namespaced_listing=True).splitlines() == [
        "NAMESPACE   NAME",
        "ns1         x",
    ]
