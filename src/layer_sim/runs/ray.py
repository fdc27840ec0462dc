"""Ray executor (optional extra ``layer-sim[ray]``): the same units as Ray tasks, locally or on a cluster.

Each unit is one Ray task running :func:`layer_sim.runs.spec.execute`, which imports the unit's
function by its registered import path on whichever node runs it, so every node needs layer_sim
and the modules defining the unit kinds installed (or shipped with a Ray ``runtime_env``). Results
come back to the driver, which alone writes the store. Ray's own task retries are switched off
(``max_retries=0``): the driver's ``retries`` decides, so a unit whose worker dies is reported
once, as that unit's failure.
"""

from __future__ import annotations

from typing import Any

from layer_sim.errors import ConfigError
from layer_sim.runs.executors import Executor, available_cores
from layer_sim.runs.spec import Outcome, Task, execute, failed_outcome

__all__ = ["RayExecutor", "LOCAL_RAY_OPTIONS"]

#: ``ray.init`` options when no Ray is running and no address is given: a private local Ray bound
#: to loopback, without the dashboard, and with a small object store (units return small results;
#: Ray would otherwise reserve about 30 % of the machine's memory).
LOCAL_RAY_OPTIONS: dict[str, Any] = {
    "_node_ip_address": "127.0.0.1",
    "include_dashboard": False,
    "object_store_memory": 256 * 2**20,
}


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("backend 'ray' needs Ray, which is not installed: pip install 'layer-sim[ray]'") from None
    return ray


class RayExecutor(Executor):
    """Run units as Ray tasks.

    Parameters
    ----------
    address : str or None, default=None
        A Ray cluster to join (``"auto"``, ``"ray://head:10001"``, ...); None starts a local Ray
        with :data:`LOCAL_RAY_OPTIONS` plus ``init_options``. A Ray already initialised in this
        process is used as it is, and is left running at the end.
    threads : int, default=1
        CPUs reserved per task (``num_cpus``) and torch threads set in it.
    capacity : int or None, default=None
        Units kept in flight; None for the cluster's CPUs divided by ``threads``.
    init_options : dict or None
        Extra ``ray.init`` keyword arguments (e.g. ``runtime_env``).
    """

    def __init__(self, *, address: str | None = None, threads: int = 1, capacity: int | None = None,
                 init_options: dict[str, Any] | None = None) -> None:
        self.address = address
        self.threads = threads
        self._capacity = capacity
        self._init_options = dict(init_options or {})
        self._owns = False
        self._pending: dict[Any, Task] = {}

    def start(self) -> None:
        ray = _import_ray()
        if not ray.is_initialized():
            options = self._init_options if self.address else {"num_cpus": available_cores(), **LOCAL_RAY_OPTIONS,
                                                               **self._init_options}
            try:
                ray.init(address=self.address, **options)
            except ConnectionError as exc:
                raise ConfigError(f"ray_address {self.address!r}: cannot join a Ray cluster there ({exc})") from exc
            self._owns = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = self._capacity or max(1, cpus // self.threads)
        self._remote = ray.remote(num_cpus=self.threads, max_retries=0)(execute)

    def submit(self, task: Task) -> None:
        self._pending[self._remote.remote(task)] = task
        return None  # the node and pid are known only from the outcome

    def next_outcome(self) -> Outcome:
        ray = _import_ray()
        [ref], _ = ray.wait(list(self._pending), num_returns=1)
        task = self._pending.pop(ref)
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:  # the worker died or the task was lost
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return failed_outcome(task, f"Ray {type(exc).__name__} while running this unit: {first}")

    def abort(self) -> None:
        ray = _import_ray()
        for ref in self._pending:
            ray.cancel(ref, force=True)
        self._pending.clear()

    def close(self) -> None:
        if self._owns:
            _import_ray().shutdown()
            self._owns = False
