"""Shared by the demo scripts: repository paths and the digit data split's constants (the model itself is the
pure core's ``ddistill.demo_model``; the split, which needs scikit-learn, is ``demo/train.py:digits_split``, out
of the main job's reach: ``python -m demo.run_demo`` imports this module and runs without the test requirements).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = REPO / "demo" / "weights"
SPLIT_SEED = 0
NUM_TRAIN = 1297  # images of the base model; the other 500 of the 1797 train the digit classifier
