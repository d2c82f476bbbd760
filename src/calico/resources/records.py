"""Reading the plain JSON records Calico keeps beside its resources (IPAM's, the DHCP agents' subnets). Pure."""

from __future__ import annotations

import json
from typing import Any


def json_object(key: str, value: bytes | str, error: type[ValueError]) -> dict[str, Any]:
    """The stored value at `key` as a JSON object; `error` naming the key when it is not one."""
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"{key}: stored value is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise error(f"{key}: stored value is not a JSON object")
    return data
