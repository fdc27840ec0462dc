"""Wrong arguments, as a hostile but realistic user gives them: every one is a ValueError subclass
from layer_sim.errors whose message names the argument; nothing reaches torch, NumPy or Python's
own TypeError."""

import importlib
import inspect

import pytest

from layer_sim.errors import ConfigError, LayerSimError, UnknownNameError

# Every module whose __all__ is public API.
PUBLIC_MODULES = [
    "layer_sim", "layer_sim.measures", "layer_sim.analysis", "layer_sim.analysis.stats", "layer_sim.representations",
    "layer_sim.data", "layer_sim.models", "layer_sim.training", "layer_sim.experiments.seeds",
    "layer_sim.experiments.sanity", "layer_sim.report.figures", "layer_sim.report.files", "layer_sim.report.tables",
    "layer_sim.report.sanity", "layer_sim.store", "layer_sim.runs",
]  # fmt: skip
# Public classes a user does not configure by calling them: results, protocols, base classes.
NOT_CONFIGURED = {
    "SimilarityMatrix", "LayerIdentification", "SeedSummary", "SeedsResult", "SanityCheckResult", "RowResult",
    "ArchitectureComparison", "Timings", "Row", "Representations", "Measure", "Loss", "CrossEntropy", "MSEOneHot",
    "Checkpoint", "Callback", "FitResult", "TrainState", "UnitContext", "SweepSummary", "RunRecord", "Executor",
    "SerialExecutor", "LocalPoolExecutor",
}  # fmt: skip


def _public_callables():
    found = {}
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isclass(obj) and (issubclass(obj, BaseException) or attr in NOT_CONFIGURED):
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                found.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return found


PUBLIC = _public_callables()


def test_the_public_surface_is_found():
    assert len(PUBLIC) > 60 and "layer_sim.measures._cka.linear_cka" in PUBLIC and "layer_sim.training.recipe.Recipe" in PUBLIC


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_a_misspelt_keyword_is_our_error_naming_it(name):
    obj = PUBLIC[name]
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(obj).parameters.values())
    with pytest.raises(LayerSimError) as info:
        obj(no_such_option=1)
    if not accepts_any:  # **params functions pass unknown names on (to a measure), which refuses them
        assert isinstance(info.value, UnknownNameError) and "unknown option(s) no_such_option" in str(info.value)


@pytest.mark.parametrize(
    "call, error, message",
    [
        ("linear_cka(x, y, debiassed=True)", UnknownNameError,
         r"linear_cka: unknown option\(s\) debiassed \(did you mean debiased\?\); accepted: x, y, debiased"),
        ("linear_cka(x, y, True)", ConfigError, "linear_cka: too many positional arguments; it takes x, y positionally"),
        ("linear_cka(x)", ConfigError, "linear_cka: missing a required argument: 'y'"),
        ("linear_cka(x, y, x=x)", ConfigError, "linear_cka: multiple values for argument 'x'"),
        ("minibatch_cka(x, y)", ConfigError, "minibatch_cka: missing a required argument: 'batch_size'"),
        ("StreamingLinearCKA(debiased=True)", UnknownNameError, r"StreamingLinearCKA: unknown option\(s\) debiased"),
        ("MLP((4, 2), activaton='tanh')", UnknownNameError, r"\(did you mean activation\?\)"),
        ("Recipe(learning_rate=0.1)", UnknownNameError, r"Recipe: unknown option\(s\) learning_rate; accepted: optimizer, lr"),
        ("fit(MLP((4, 2)), None, Recipe())", ConfigError, "fit: missing a required argument: 'seed'"),
        ("fit(MLP((4, 2)), None, Recipe(), sed=0)", UnknownNameError, r"\(did you mean seed\?\)"),
        ("extract(MLP((4, 2)), x, layer=['act1'])", UnknownNameError, r"\(did you mean layers\?\)"),
        ("summarize([0.1, 0.2])", ConfigError, "summarize: missing a required argument: 'threshold'"),
    ],
)
def test_argument_mistakes_name_the_argument(call, error, message):
    import numpy as np

    import layer_sim as ls
    from layer_sim.analysis.stats import summarize

    x = np.random.default_rng(0).standard_normal((10, 4))
    env = {"x": x, "y": x[:, :2], "summarize": summarize, **{k: getattr(ls, k) for k in ls.__all__}}
    with pytest.raises(error, match=message):
        eval(call, env)
