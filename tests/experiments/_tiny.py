"""The tiny sanity check of these tests (seconds, not minutes), shared with the driver script that is killed."""

from layer_sim.experiments.sanity import Row
from layer_sim.training import NetworkSpec

TINY = NetworkSpec().replace(widths=(784, 24, 20, 10), epochs=1, limit_train=1500)
ARCHS = {"deep": (784, 16, 16, 16, 10)}
ROWS = (
    Row("CKA (Linear)", "linear_cka", {}, 99.3),
    Row("PWCCA", "pwcca", {}, 11.1),
    Row("CKA (RBF 0.4)", "rbf_cka", {"sigma": 0.4}, 99.1),
)
K = 60
