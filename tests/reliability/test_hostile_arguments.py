"""Wrong arguments, as a hostile but realistic user gives them: every one is a ValueError subclass
from layer_sim.errors whose message names the argument; nothing reaches torch, NumPy or Python's
own TypeError."""

import importlib
import inspect

import pytest
import torch

from layer_sim.errors import ConfigError, DataError, InputError, LayerSimError, UnknownNameError

# Every module whose __all__ is public API.
PUBLIC_MODULES = [
    "layer_sim", "layer_sim.measures", "layer_sim.analysis", "layer_sim.analysis.stats", "layer_sim.representations",
    "layer_sim.data", "layer_sim.models", "layer_sim.training", "layer_sim.experiments.seeds",
    "layer_sim.experiments.sanity", "layer_sim.report.figures", "layer_sim.report.files", "layer_sim.report.tables",
    "layer_sim.report.sanity", "layer_sim.store", "layer_sim.runs", "layer_sim.dynamics",
    "layer_sim.experiments.gradient_study", "layer_sim.experiments.pruning", "layer_sim.experiments.learning_dynamics",
    "layer_sim.experiments.correlations", "layer_sim.analysis.correlation", "layer_sim.experiments.table2_study",
]  # fmt: skip
# Public classes a user does not configure by calling them: results, protocols, base classes.
NOT_CONFIGURED = {
    "SimilarityMatrix", "LayerIdentification", "SeedSummary", "SeedsResult", "SanityCheckResult", "RowResult",
    "ArchitectureComparison", "Timings", "Row", "Representations", "Measure", "Loss", "CrossEntropy", "MSEOneHot",
    "Checkpoint", "Callback", "FitResult", "TrainState", "UnitContext", "SweepSummary", "RunRecord", "Executor",
    "SerialExecutor", "LocalPoolExecutor", "PrunedNetwork",
    "CorrelationResult", "GradientStudyResult", "IdentificationRow", "NetworkRow", "PairRecord", "PairRunResult", "ParameterRow", "PruningStudyResult", "SimilarityRow", "StudyResult", "FamilyResult", "Table2StudyResult",
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


def _tiny_task():
    from layer_sim.data import Task

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g)
    return Task("tiny", (x, y), (x, y), 2, "cross_entropy")


def _fit(**changes):
    from layer_sim.models import MLP
    from layer_sim.training import Recipe, fit

    args = {"model": MLP((4, 3, 2), seed=0), "task": _tiny_task(), "recipe": Recipe(epochs=1, batch_size=8), "seed": 0}
    args.update(changes)
    return fit(args.pop("model"), args.pop("task"), args.pop("recipe"), **args)


def _mlp(**kw):
    from layer_sim.models import MLP

    return MLP((4, 2), **kw)


def _summarize(**kw):
    from layer_sim.analysis.stats import summarize

    return summarize(kw.pop("values", [0.97, 0.99]), **{"threshold": 0.98, **kw})


def _load_mnist(*args, **kw):
    from layer_sim.data import load_mnist

    return load_mnist(*args, **kw)


def _sanity(**kw):
    from layer_sim.experiments.sanity import sanity_check

    # The store is never reached: every refusal comes first (nothing would be created there).
    return sanity_check(store="/nonexistent/results.sqlite", **kw)


# (what the user did, the call, the error, what the message must say)
WRONG_VALUES = [
    ("t-test against NaN", lambda: _summarize(threshold=float("nan")), ConfigError, "summarize: threshold must be a finite number"),
    ("t-test against inf", lambda: _summarize(threshold=float("inf")), ConfigError, "summarize: threshold must be a finite number"),
    ("threshold as text", lambda: _summarize(threshold="0.98"), ConfigError, "summarize: threshold must be a finite number .* got '0.98'"),
    ("threshold True", lambda: _summarize(threshold=True), ConfigError, "summarize: threshold must be a finite number"),
    ("confidence 1", lambda: _summarize(confidence=1.0), ConfigError, r"summarize: confidence must be a finite number in \(0, 1\)"),
    ("confidence NaN", lambda: _summarize(confidence=float("nan")), ConfigError, "summarize: confidence must be"),
    ("confidence as text", lambda: _summarize(confidence="95%"), ConfigError, "summarize: confidence must be"),
    ("values as text", lambda: _summarize(values=["high", "low"]), InputError, "summarize: values must be a sequence of numbers"),
    ("values 2-D", lambda: _summarize(values=[[0.97, 0.98], [0.99, 0.97]]), InputError, r"values must be one number per seed .*shape \(2, 2\)"),
    ("values None", lambda: _summarize(values=None), InputError, r"values must be one number per seed .*shape \(\)"),
    ("MLP seed beyond int64", lambda: _mlp(seed=2**64), ConfigError, "MLP: seed must be an integer >= 0, got 18446744073709551616"),
    ("MLP seed 2**63", lambda: _mlp(seed=2**63), ConfigError, "MLP: seed must be an integer >= 0"),
    ("MLP seed negative", lambda: _mlp(seed=-1), ConfigError, "MLP: seed must be an integer >= 0, got -1"),
    ("MLP seed float", lambda: _mlp(seed=1.5), ConfigError, "MLP: seed must be an integer >= 0, got 1.5"),
    ("MLP seed text", lambda: _mlp(seed="0"), ConfigError, "MLP: seed must be an integer"),
    ("reset seed beyond int64", lambda: _mlp().reset_parameters(seed=2**64), ConfigError, "MLP.reset_parameters: seed must be"),
    ("split as a list", lambda: _load_mnist(["train"]), ConfigError, r"load_mnist: unknown split \['train'\]"),
    ("split None", lambda: _load_mnist(None), ConfigError, "load_mnist: unknown split None"),
    ("download as text", lambda: _load_mnist("test", download="no"), ConfigError, "load_mnist: download must be True or False, got 'no'"),
    ("data dir is a file", lambda: _load_mnist("test", __file__), DataError, r"MNIST: the data directory .*\.py is a file, not a directory"),
    ("fit a string", lambda: _fit(model="mlp"), ConfigError, "fit: model must be a torch.nn.Module with parameters, got str"),
    ("fit a model without parameters", lambda: _fit(model=torch.nn.ReLU()), ConfigError, "fit: model must be a torch.nn.Module with parameters, got ReLU"),
    ("callbacks not iterable", lambda: _fit(callbacks=3), ConfigError, "fit: callbacks must be an iterable of callbacks, got int"),
    ("fit seed beyond int64", lambda: _fit(seed=2**64), ConfigError, "fit: seed must be an integer >= 0"),
    ("sanity device gpu", lambda: _sanity(device="gpu", nets=2), ConfigError, "sanity_check: device='gpu' is not a torch device name"),
    ("sanity device cuda", lambda: _sanity(device="cuda:99", nets=2), ConfigError, "sanity_check: device='cuda:99' but"),
    ("sanity nets beyond any study", lambda: _sanity(nets=10**20), ConfigError, r"sanity_check: nets must be an integer in \[2, 1000\]"),
    ("sanity nets float", lambda: _sanity(nets=5.0), ConfigError, r"sanity_check: nets must be an integer in \[2, 1000\], got 5.0"),
]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("what, call, error, message", WRONG_VALUES, ids=[w[0] for w in WRONG_VALUES])
def test_wrong_values_are_refused_naming_the_argument(what, call, error, message):
    with pytest.raises(error, match=message):
        call()
