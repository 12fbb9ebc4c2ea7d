"""The GPU workflow runner behind ``scripts/gpu_workflows.py`` and the runner graphs the tests queue."""
