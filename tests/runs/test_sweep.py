"""The sweep driver, in-process: skip what is done, record, retry, mark failed, resume after Ctrl-C."""

import doctest

import pytest

import layer_sim.runs.sweep as sweep_module
from _sweep_checks import expected_contents, store_contents
from layer_sim.errors import ConfigError, UnknownNameError
from layer_sim.runs import SweepInterrupted, SweepSummary, Unit, make_executor, run_sweep
from layer_sim.store import Store


def compute_units(n, **extra):
    return [Unit("test.compute", {"i": i, **extra}) for i in range(n)]


def test_a_sweep_records_every_result_and_a_rerun_skips_them(tmp_path):
    path = tmp_path / "results.sqlite"
    units = compute_units(5)
    lines = []
    first = run_sweep(units, path, log=lines.append)
    assert (first.total, first.done, first.skipped, first.failed, first.not_run) == (5, 5, 0, 0, 0)
    assert store_contents(path) == expected_contents(units)
    assert lines == [str(first)] and str(first).startswith("5 units: 5 done, 0 skipped (already done), 0 failed in ")
    again = run_sweep(units + compute_units(7)[5:], path)
    assert (again.total, again.done, again.skipped, again.failed) == (7, 2, 5, 0)
    assert store_contents(path) == expected_contents(compute_units(7))
    with Store(path) as s:
        runs = s.runs()
    assert runs["attempts"].tolist() == [1] * 7  # nothing ran twice
    assert (tmp_path / "artefacts" / units[0].key / "value.txt").read_text() == "0\n"


def test_equal_units_run_once(tmp_path):
    summary = run_sweep(compute_units(2) + compute_units(2), tmp_path / "r.sqlite")
    assert (summary.total, summary.done) == (2, 2)


def test_a_failing_unit_is_retried_then_marked_failed_and_the_sweep_goes_on(tmp_path):
    path = tmp_path / "r.sqlite"
    units = compute_units(2) + [Unit("test.fail", {"i": 9})] + compute_units(4)[2:]
    lines = []
    summary = run_sweep(units, path, retries=2, log=lines.append)
    bad = units[2].key
    assert (summary.done, summary.failed) == (4, 1) and summary.failures == {bad: "ValueError: unit 9 refuses to run"}
    with Store(path) as s:
        rec = s.run(bad)
    assert (rec.status, rec.attempts, rec.error) == ("failed", 3, "ValueError: unit 9 refuses to run")
    assert "raise ValueError" in rec.traceback
    assert sum("failed: ValueError: unit 9 refuses to run; retrying" in line for line in lines) == 2
    assert sum(line.endswith("attempt 3 failed: ValueError: unit 9 refuses to run") for line in lines) == 1
    contents = store_contents(path)
    assert {k: v for k, v in contents.items() if k != bad} == expected_contents(compute_units(4))
    # a later sweep tries the failed unit again (it is not done), and only it
    again = run_sweep(units, path, retries=0)
    assert (again.done, again.skipped, again.failed) == (0, 4, 1)
    with Store(path) as s:
        assert s.run(bad).attempts == 4


def test_a_flaky_unit_succeeds_on_its_retry(tmp_path):
    path = tmp_path / "r.sqlite"
    summary = run_sweep([Unit("test.flaky", {})], path, retries=1)
    assert (summary.done, summary.failed) == (1, 0)
    with Store(path) as s:
        rec = s.run(s.runs()["key"].item())
    assert (rec.status, rec.attempts, rec.error, rec.metrics) == ("done", 2, None, {"attempt": 2.0})


def test_without_retries_a_flaky_unit_fails(tmp_path):
    summary = run_sweep([Unit("test.flaky", {})], tmp_path / "r.sqlite", retries=0)
    assert (summary.done, summary.failed) == (0, 1)


def test_ctrl_c_keeps_what_finished_and_a_rerun_resumes(tmp_path):
    path = tmp_path / "r.sqlite"
    units = [Unit("test.interrupt", {"i": i, "interrupt": i == 2}) for i in range(5)]
    with pytest.raises(SweepInterrupted) as info:
        run_sweep(units, path)
    s = info.value.summary
    assert isinstance(info.value, KeyboardInterrupt)
    assert (s.done, s.skipped, s.failed, s.not_run) == (2, 0, 0, 3)
    with Store(path) as store:
        status = dict(zip(store.runs()["key"], store.runs()["status"]))
    assert [status[u.key] for u in units] == ["done", "done", "pending", "pending", "pending"]
    fixed = units[:2] + [Unit("test.interrupt", {"i": i, "interrupt": False}) for i in range(2, 5)]
    resumed = run_sweep(fixed, path)
    assert (resumed.done, resumed.skipped) == (3, 2)


def test_run_sweep_checks_its_arguments(tmp_path):
    path = tmp_path / "r.sqlite"
    with pytest.raises(ConfigError, match="retries must be an integer >= 0"):
        run_sweep(compute_units(1), path, retries=-1)
    with pytest.raises(ConfigError, match="units must be Unit objects, got dict"):
        run_sweep([{"kind": "test.compute"}], path)
    with pytest.raises(ConfigError, match="device must be a torch device name"):
        run_sweep(compute_units(1), path, device="")
    run_sweep(compute_units(1), path)
    with Store(path) as reader, pytest.raises(ConfigError, match="is read-only"):
        run_sweep(compute_units(1), reader)


def test_an_open_writer_store_can_be_passed_and_stays_open(tmp_path):
    with Store(tmp_path / "r.sqlite", write=True) as s:
        assert run_sweep(compute_units(2), s).done == 2
        assert run_sweep(compute_units(3), s).done == 1
        assert s.counts()["done"] == 3


def test_make_executor_checks_the_shared_options():
    with pytest.raises(UnknownNameError, match="backend: unknown value 'slurm'; available: local, ray"):
        make_executor(backend="slurm")
    with pytest.raises(ConfigError, match="workers must be an integer >= 1, got 0"):
        make_executor(workers=0)
    with pytest.raises(ConfigError, match="ray_address='auto' needs backend='ray'"):
        make_executor(ray_address="auto")
    with pytest.raises(ConfigError, match="ray_address must be a non-empty string"):
        make_executor(backend="ray", ray_address=" ")


def test_summary_text():
    s = SweepSummary(total=10, done=6, skipped=2, failed=1, not_run=1, seconds=3.25)
    assert str(s) == "10 units: 6 done, 2 skipped (already done), 1 failed, 1 not run (interrupted) in 3.2 s"


def test_doctests():
    failures, tried = doctest.testmod(sweep_module)
    assert tried > 0 and failures == 0
