"""W3 at full size, outside run.py's 15-minute budget: the 6x6 RBF CKA matrix at n = 20,000.

    /usr/bin/time -v python benchmarks/w3_rbf_20k.py    # prints the time; time -v gives peak RSS

Two random-init ReLU MLPs 784->1024x5->10 (seeds 0 and 1), torch.randn(20000, 784) inputs,
compare(measure="rbf_cka", sigma=0.8): the blockwise path, no n x n matrix kept.
"""

import time

import torch

from layer_sim import MLP, compare, extract

torch.manual_seed(0)
x = torch.randn(20000, 784)
reps = [extract(MLP((784,) + (1024,) * 5 + (10,), seed=s), x) for s in (0, 1)]
t = time.perf_counter()
s = compare(reps[0], reps[1], measure="rbf_cka", sigma=0.8)
print(f"W3 6x6 rbf_cka n=20000: {time.perf_counter() - t:.1f} s")
print(s.to_frame().round(4))
