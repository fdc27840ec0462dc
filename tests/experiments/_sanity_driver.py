"""Run the tiny sanity check into STORE with cache CACHE, each identification slowed by SLEEP seconds (to be killed)."""

import sys
import time

import layer_sim.analysis as analysis
from _tiny import ARCHS, K, ROWS, TINY
from layer_sim.experiments.sanity import sanity_check



def main(store: str, cache: str, sleep: float) -> None:
    identify = analysis.layer_identification

    def slowed(*args, **kwargs):  # the units look it up on the package at call time
        time.sleep(sleep)
        return identify(*args, **kwargs)

    analysis.layer_identification = slowed
    sanity_check(store=store, cache_dir=cache, nets=3, examples=K, config=TINY, rows=ROWS, architectures=ARCHS)
    print("finished")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
