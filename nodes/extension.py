"""Registers the pack's V3 nodes with ComfyUI (one extension, one entry point)."""

from __future__ import annotations

from .api import ComfyExtension, io
from .demo_nodes import NODES as DEMO_NODES
from .hybrid_nodes import NODES as HYBRID_NODES
from .meter_nodes import NODES as METER_NODES
from .preview_nodes import NODES as PREVIEW_NODES


class DiversityDistillationExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [*PREVIEW_NODES, *HYBRID_NODES, *METER_NODES, *DEMO_NODES]
