"""Diversity distillation node pack: pure-torch maths and ComfyUI node classes.

Modules without a ComfyUI import (usable and testable on their own): ``schedules``, ``trajectory``,
``pairing``, ``diversity``, ``x0_preview``, ``demo_model``. ComfyUI-facing code: ``api`` (the one ``comfy_api``
import), ``comfy_bridge`` (sampling through ComfyUI's own functions), ``metric_backends`` (perceptual networks
through ComfyUI's model management); the V3 node classes are in ``*_nodes.py``, registered by ``extension``.
"""
