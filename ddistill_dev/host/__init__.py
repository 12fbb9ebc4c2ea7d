"""The ComfyUI host for tests, tools and benchmarks: booting it in process, its server with the test-only nodes."""
