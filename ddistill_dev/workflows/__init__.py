"""The source of the shipped workflows (``workflows/``) and of the subgraph blueprint (``subgraphs/``): graph pieces,
the catalog of every workflow, the builder behind ``scripts/build_workflows.py``, layout, sweeps and thumbnails."""
