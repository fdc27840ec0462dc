"""Suite-wide setup: tests read MNIST from the shared offline copy beside the repository."""

import os
from pathlib import Path

_SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

# CI exports LAYER_SIM_DATA; a developer running plain `pytest` in a checkout next to shared/
# gets the same files instead of a download attempt (tests use the product's own lookup).
# Passive OpenMP waiting: with torch's default busy-wait, a test's two intra-op threads spin
# against any other process on a 2-core machine, and small-batch training tests ran ~10x slower
# (136 s vs 15 s measured). Must be set before torch is first imported, hence here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if "LAYER_SIM_DATA" not in os.environ and _SHARED_MNIST.is_dir():
    os.environ["LAYER_SIM_DATA"] = str(_SHARED_MNIST)
