"""Queue-time checks of the pack's nodes (``validate_inputs``), built on ComfyUI's own link-type check and the
core's schedule rules, so that each rule and its message are written once."""

from __future__ import annotations

from comfy_execution.validation import validate_node_input

from ..ddistill.schedules import step_count_problem


def link_type_error(node_cls, input_types: dict) -> str | None:
    """ComfyUI's own link-type check, for nodes whose validate_inputs takes ``input_types`` (ComfyUI skips its
    own check for the inputs a node validates itself)."""
    declared = node_cls.INPUT_TYPES()
    for name, received in (input_types or {}).items():
        spec = declared.get("required", {}).get(name) or declared.get("optional", {}).get(name)
        if spec is not None and not validate_node_input(received, spec[0]):
            return f"{name}: a {received} output is linked here but this input takes {spec[0]}; relink it"
    return None


def schedule_widgets(node_cls, input_types, steps: int, base_steps: int | None = None) -> str | bool:
    """Link types, then the schedule rule on the ``steps`` widget; a linked SIGMAS replaces steps and is checked
    when the node runs. ``base_steps=None``: a node without a base segment (Skip First Step)."""
    bad_link = link_type_error(node_cls, input_types)
    if bad_link:
        return bad_link
    if steps < 1:
        return f"steps: must be at least 1, got {steps}"
    if base_steps is not None and base_steps < 1:
        return step_count_problem(steps, base_steps)
    if "sigmas" in (input_types or {}):
        return True
    return step_count_problem(steps, base_steps) or True
