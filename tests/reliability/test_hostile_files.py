"""Files a user or a crash leaves behind: what we write gets the umask's mode and no leftovers."""

import os

import pytest

from layer_sim.store import Store


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_results_store_gets_the_mode_the_umask_allows(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with Store(tmp_path / "results.sqlite", write=True):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "results.sqlite").stat().st_mode & 0o777 == mode


def test_the_leftovers_of_a_store_creation_killed_by_kill_9_are_removed(tmp_path):
    # What a creator killed between mkstemp and the rename leaves: the half-made database and its WAL files.
    leftovers = [tmp_path / f".results.sqlite.0123456789ab.part{s}" for s in ("", "-wal", "-shm")]
    for p in leftovers:
        p.write_bytes(b"half")
    with Store(tmp_path / "results.sqlite", write=True) as store:
        assert store.plan([("k", "toy", "{}")]) == {"k": "pending"}
    assert sorted(os.listdir(tmp_path)) == ["results.sqlite", "results.sqlite.lock"]
