"""The one module of the pack that imports ``comfy_api``: a change of V3 API version touches this file.

Why ``comfy_api.latest`` and not a pinned ``comfy_api.v0_0_x``: both tested hosts (ComfyUI 0.3.75 and 0.33.0) ship
``latest``, ``v0_0_1`` and ``v0_0_2``, but neither pin freezes anything. In both, ``v0_0_2`` is an adapter marked
``STABLE = False`` that re-exports ``latest``'s own ``io``, ``ui`` and ``ComfyExtension`` objects, and ``v0_0_1``
does not export ``io`` or ``ui`` at all. A pin would name a version without holding the schema still. ComfyUI's own
nodes (``comfy_extras``) import ``comfy_api.latest``, and the suite runs the pack's nodes on both hosts
(README: "Tested ComfyUI versions").
"""

from dataclasses import fields

from comfy_api.latest import ComfyExtension, io, ui

from ..ddistill import protocol

__all__ = ["ComfyExtension", "io", "search_aliases", "ui"]


def search_aliases(node_id: str) -> dict:
    """``io.Schema`` keywords giving the node search the words of ``protocol.SEARCH_ALIASES`` to find node
    ``node_id`` by, where the host's schema has ``search_aliases`` (ComfyUI 0.33); an empty dict on hosts without it
    (0.3.75), so the pack loads on both."""
    if "search_aliases" not in {f.name for f in fields(io.Schema)}:
        return {}
    return {"search_aliases": list(protocol.SEARCH_ALIASES[node_id])}
