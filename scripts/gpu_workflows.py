#!/usr/bin/env python3
"""Command line of ``ddistill_dev/gpu/gpu_workflows.py`` (its docstring says what it does); see ``--help``."""

import sys

from ddistill_dev.gpu.gpu_workflows import main

if __name__ == "__main__":
    sys.exit(main())
