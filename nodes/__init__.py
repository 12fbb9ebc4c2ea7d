"""The pack's ComfyUI-facing code: the V3 node classes (``*_nodes.py``) and the thin layer between them and ComfyUI;
the mathematics lives in the pure package ``ddistill`` beside this folder. What each module holds and what it may
import: README, "Layout and architecture"."""
