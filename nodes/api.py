"""The one module of the pack that imports ``comfy_api``: a change of V3 API version touches this file."""

from comfy_api.latest import ComfyExtension, io, ui  # noqa: F401

__all__ = ["ComfyExtension", "io", "ui"]
