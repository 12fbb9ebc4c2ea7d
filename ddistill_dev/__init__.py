"""Shared tooling of the pack's own tests, scripts, demo and benchmarks (never loaded by ComfyUI): in-process and
server ComfyUI hosts, random-weight models, the workflow builder and the GPU workflow runner."""
