"""One Ray for the whole test session, started only when a test asks for it (it costs ~5-11 s and ~0.4 GiB)."""

import importlib.util
import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs bound to loopback, no dashboard, a 200 MiB object store.

    Skips, saying why, when Ray is not installed, except under ``CI=true``, where a missing Ray
    fails: CI installs the ``ray`` extra and must run these tests.
    """
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Ray is not installed, and CI must run the Ray tests (pip install 'layer-sim[ray]')")
        pytest.skip("Ray is not installed (pip install 'layer-sim[ray]'): the Ray backend is untested here")
    import ray

    # Ray's workers do not inherit this process's sys.path: give them the test-only unit kinds.
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, object_store_memory=200 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": path}}, log_to_driver=False)
    yield ray
    ray.shutdown()
