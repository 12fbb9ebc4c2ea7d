"""The pack's ComfyUI-facing code: V3 node classes (``*_nodes.py``) and the thin layer between them and ComfyUI.

- ``api``: the one ``comfy_api`` import; ``extension``: registers the nodes; ``io_types``: the pack's socket types.
- ``sampling``: segments through ``comfy.sample.sample_custom``, model info, schedules and input checks.
- ``recorder``: the one x̂0 recorder (sampler callback) and the canvas filmstrip's live frames.
- ``metric_loading``: the perceptual networks placed by ComfyUI's model management, weights via folder_paths.

The mathematics lives in the pure package ``ddistill`` beside this folder (no ComfyUI import).
"""
