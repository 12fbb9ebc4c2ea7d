"""The pack's pure core: the mathematics of diversity distillation, with no ComfyUI import (a ruff rule bans ComfyUI's
modules here). What each module holds and what it may import: README, "Layout and architecture"."""
