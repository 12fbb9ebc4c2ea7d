"""Shared tooling of the pack's own tests, scripts and benchmarks (never loaded by ComfyUI), one subpackage per kit:
``host`` (ComfyUI booted in process, its server with the test-only nodes), ``models`` (tiny and full-size random model
files), ``workflows`` (the source of the shipped workflows and the blueprint), ``gpu`` (the GPU workflow runner and
the API graphs the tests queue). README "Layout and architecture" describes the layout."""
