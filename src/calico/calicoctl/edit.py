"""Pure edits calicoctl makes to a resource's user-facing dict: JSON merge patch and label changes."""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: mappings merge recursively, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class LabelError(ValueError):
    pass


def set_label(doc: dict[str, Any], key: str, value: str, overwrite: bool) -> dict[str, Any]:
    labels = dict(doc.get("metadata", {}).get("labels") or {})
    if key in labels and labels[key] != value and not overwrite:
        raise LabelError(f"label {key} already has value {labels[key]!r}; use --overwrite to change it")
    labels[key] = value
    return merge_patch(doc, {"metadata": {"labels": labels}})


def remove_label(doc: dict[str, Any], key: str) -> dict[str, Any]:
    labels = dict(doc.get("metadata", {}).get("labels") or {})
    if key not in labels:
        raise LabelError(f"label {key} is not present")
    del labels[key]
    out = merge_patch(doc, {"metadata": {"labels": None}})
    if labels:
        out["metadata"]["labels"] = labels
    return out
