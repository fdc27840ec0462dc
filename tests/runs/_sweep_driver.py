"""A sweep driver run as its own process by the reliability tests: python _sweep_driver.py STORE N WORKERS SLEEP."""

import sys

import _sweep_units  # noqa: F401  (registers the test.* kinds)
from layer_sim.runs import SweepInterrupted, Unit, make_executor, run_sweep


def main(store: str, n: int, workers: int, sleep: float) -> int:
    units = [Unit("test.compute", {"i": i, "sleep": sleep}) for i in range(n)]
    try:
        summary = run_sweep(units, store, make_executor(workers=workers), retries=0)
    except SweepInterrupted as exc:
        print(f"interrupted: {exc.summary}", flush=True)
        return 130
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
