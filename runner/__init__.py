"""API-mode experiment runner: `python -m runner WORKFLOW --prompts FILE --seeds N --server HOST:PORT ...` queues an
API-format workflow over one or more ComfyUI servers and writes a diversity report (see cli.py, CONVENTIONS.md)."""
