"""Units of work: keys, spec validation, the kind registry, results checks and the worker entry point."""

import doctest
import hashlib
import json
import pickle
import re

import pytest

import _sweep_units  # noqa: F401  (registers the test.* kinds)
import layer_sim.runs.spec as spec_module
from layer_sim.errors import ConfigError, UnknownNameError
from layer_sim.runs import Unit, UnitContext, UnitResult, kinds, unit_kind
from layer_sim.runs.spec import Task, execute, kind_target


def _key_by_hand(kind, spec):
    """SHA-256 of {"kind": "unit", "version": 1, "fields": {...}} in sorted, compact JSON, first 24 hex digits."""
    text = json.dumps({"kind": "unit", "version": 1, "fields": {"kind": kind, "spec": spec}},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def test_key_is_the_versioned_content_hash_of_kind_and_spec():
    spec = {"i": 3, "lr": 0.1, "name": "é", "widths": [784, 256, 10], "nested": {"b": None, "a": True}}
    assert Unit("test.compute", spec).key == _key_by_hand("test.compute", spec)


def test_key_ignores_key_order_and_tuples_become_lists():
    a = Unit("test.compute", {"i": 1, "widths": (784, 10)})
    b = Unit("test.compute", {"widths": [784, 10], "i": 1})
    assert a.key == b.key and a.spec == {"i": 1, "widths": [784, 10]} and a == b
    assert a.key != Unit("test.compute", {"i": 2, "widths": [784, 10]}).key
    assert a.key != Unit("test.fail", {"i": 1, "widths": [784, 10]}).key
    assert a.spec_json == '{"i":1,"widths":[784,10]}'


@pytest.mark.parametrize("spec, message", [
    ([1, 2], "must be a JSON object"),
    ({1: "a"}, r"key 1 at \$ is not a string"),
    ({"a": {"b": float("nan")}}, r"nan at \$\.a\.b is not JSON"),
    ({"a": [1, float("inf")]}, r"inf at \$\.a\[1\] is not JSON"),
    ({"a": {1, 2}}, r"set value .* at \$\.a is not JSON"),
    ({"a": object()}, "object value"),
])
def test_specs_that_are_not_json_objects_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        Unit("test.compute", spec)


def test_unknown_kind_lists_the_registered_ones():
    with pytest.raises(UnknownNameError, match=r"unknown unit kind 'test.nope'; registered: .*test.compute"):
        Unit("test.nope", {})


def test_registry_records_import_paths_and_refuses_what_workers_cannot_import():
    assert kind_target("test.compute") == "_sweep_units:compute"
    assert "test.compute" in kinds()
    unit_kind("test.compute")(_sweep_units.compute)  # the same function again (a worker importing it): fine
    with pytest.raises(ConfigError, match="already registered as _sweep_units:compute"):
        unit_kind("test.compute")(_sweep_units.fail)

    def local(spec, context):
        return UnitResult()

    with pytest.raises(ConfigError, match="must be a module-level function"):
        unit_kind("test.local")(local)
    with pytest.raises(ConfigError, match="non-empty string"):
        unit_kind("")


def _task(tmp_path, kind, spec, attempt=1):
    unit = Unit(kind, spec)
    return Task(unit, kind_target(kind), UnitContext(key=unit.key, output_dir=tmp_path / unit.key, attempt=attempt))


def test_execute_returns_checked_results_with_timings_and_versions(tmp_path):
    task = _task(tmp_path, "test.compute", {"i": 4, "steps": 2})
    out = execute(pickle.loads(pickle.dumps(task)))  # what a worker receives
    assert out.ok and out.error is None and out.key == task.unit.key
    assert out.metrics == _sweep_units.expected_metrics({"i": 4})
    assert out.histories == {"curve": _sweep_units.expected_curve({"i": 4, "steps": 2})}
    assert out.artefacts == {"value": str(tmp_path / task.unit.key / "value.txt")}
    assert out.seconds >= 0 and out.started <= out.finished
    assert set(out.versions) == {"layer_sim", "torch", "numpy", "python"} and out.versions["torch"].startswith("2.")
    assert pickle.loads(pickle.dumps(out)) == out


@pytest.mark.parametrize("what, message", [
    ("nan", r"metrics: 'loss' = nan; .* finite numbers"),
    ("bool", r"metrics: 'ok' = True"),
    ("missing_artefact", r"artefacts: 'model' -> .*model.pt is not an existing file"),
    ("row", r"histories\['curve'\]\[0\]: must be a JSON object"),
    ("reserved", r"histories\['curve'\]: field name\(s\) history, key are reserved"),
    ("dict", "returned dict, expected UnitResult"),
])
def test_bad_results_become_failed_outcomes_naming_the_problem(tmp_path, what, message):
    out = execute(_task(tmp_path, "test.bad_result", {"what": what}))
    assert not out.ok and out.error.startswith("ConfigError: ")
    assert re.search(message, out.error), out.error
    assert "Traceback" in out.traceback and not out.metrics


def test_a_raising_unit_gives_its_error_in_one_line(tmp_path):
    out = execute(_task(tmp_path, "test.fail", {"i": 7}))
    assert not out.ok and out.error == "ValueError: unit 7 refuses to run"
    assert "raise ValueError" in out.traceback


def test_each_attempt_starts_with_an_empty_output_directory(tmp_path):
    first = execute(_task(tmp_path, "test.bad_result", {"what": "leftover"}, attempt=1))
    assert not first.ok
    second = execute(_task(tmp_path, "test.bad_result", {"what": "leftover"}, attempt=2))
    assert second.ok and second.metrics == {"leftovers": 0}


def test_keyboard_interrupt_is_not_a_unit_failure(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        execute(_task(tmp_path, "test.interrupt", {"i": 0, "interrupt": True}))


def test_doctests():
    failures, tried = doctest.testmod(spec_module)
    assert tried > 0 and failures == 0
