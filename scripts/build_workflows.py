#!/usr/bin/env python3
"""Command line of ``ddistill_dev/workflows/workflow_build.py`` (its docstring says what it does); see ``--help``."""

import sys

from ddistill_dev.workflows.workflow_build import main

if __name__ == "__main__":
    sys.exit(main())
