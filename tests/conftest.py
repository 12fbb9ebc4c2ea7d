import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfy_host  # noqa: E402

comfy_host.boot()


@pytest.fixture(scope="session")
def pack():
    return comfy_host.load_pack()
