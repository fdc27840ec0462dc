"""The examples run as documented (in a tiny configuration) and show what they claim."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cka_distillation_prints_cka_rising(capsys):
    history = _load("cka_distillation").main(["--tiny", "--epochs", "3"])
    out = capsys.readouterr().out.splitlines()
    assert len(history) == 4 and len(out) == 4 and out[0].startswith("epoch 0: linear CKA")
    assert history[-1] > history[0] + 0.3  # from a random student to a matched layer
    assert all(b > a - 0.02 for a, b in zip(history, history[1:]))  # rising, up to minibatch noise
