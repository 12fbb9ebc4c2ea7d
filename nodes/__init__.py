"""Diversity distillation node pack: pure-torch maths and ComfyUI node classes.

Modules without a ComfyUI import (usable and testable on their own): ``schedules``, ``trajectory``,
``pairing``. Everything that touches ComfyUI goes through ``api`` (the one ``comfy_api`` import)
and ``comfy_bridge`` (sampling through ComfyUI's own functions).
"""
