"""JSON Merge Patch (RFC 7396), the algorithm of its section 2.

Part of the plugin contract: `Command.apply_to` patches with it in every store, and the web
process with it to check a patched document before accepting the patch.
"""

from __future__ import annotations

from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """Return `target` with `patch` applied; neither argument is modified."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result
