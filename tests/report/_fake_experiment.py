"""A fake experiment for the report tests: units whose results are closed forms, a collect, a registered section.

Importable by name (the report tests put this directory on sys.path), as a real experiment module would be.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure

from layer_sim.experiments import Experiment, done_runs, register_experiment
from layer_sim.report.sections import Table, Text, figure_block, section
from layer_sim.runs import Unit, UnitResult, unit_kind

NAME = "fake-powers"


@unit_kind("fake.power")
def power(spec, context):
    """x ** p, and a curve of partial sums."""
    x, p = spec["x"], spec["p"]
    return UnitResult(metrics={"value": float(x ** p)},
                      histories={"curve": [{"step": k, "sum": float(sum(x ** j for j in range(k + 1)))}
                                           for k in range(p + 1)]})


@dataclass(frozen=True)
class PowersSpec:
    xs: tuple[int, ...]
    p: int
    label: str = "powers"

    def to_dict(self):
        return {"xs": list(self.xs), "p": self.p, "label": self.label}

    @classmethod
    def from_dict(cls, d):
        return cls(tuple(d["xs"]), d["p"], d["label"])


@dataclass(frozen=True)
class PowersResult:
    label: str
    rows: list[dict]


def plan(spec: PowersSpec):
    return [[Unit("fake.power", {"x": x, "p": spec.p, "seed": x}) for x in spec.xs]]


def collect(store, spec: PowersSpec) -> PowersResult:
    records = done_runs(store, plan(spec)[0], what=NAME)
    return PowersResult(spec.label, [{"x": x, "value": r.metrics["value"]} for x, r in zip(spec.xs, records)])


POWERS = register_experiment(Experiment(NAME, PowersSpec.from_dict, plan, collect))


@section(NAME, title="Fake powers")
def _section(result: PowersResult, record):
    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.plot([r["x"] for r in result.rows], [r["value"] for r in result.rows], marker="o")
    return [Text(f"Label: {result.label}"), Table(result.rows, caption="x to the power p", digits=3),
            figure_block(fig, name="powers", caption="x ** p against x")]
