"""Suite-wide setup: tests read MNIST from the shared offline copy beside the repository."""

import os
from pathlib import Path

_SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

# CI exports LAYER_SIM_DATA; a developer running plain `pytest` in a checkout next to shared/
# gets the same files instead of a skip or a download attempt.
if "LAYER_SIM_DATA" not in os.environ and _SHARED_MNIST.is_dir():
    os.environ["LAYER_SIM_DATA"] = str(_SHARED_MNIST)
