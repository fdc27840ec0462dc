"""The report of a results store as a document: one section per recorded experiment, from a registry of renderers.

A report is built from the store alone (and the artefact files it points to): for every experiment
recorded in the store (table ``experiments``), the experiment's ``collect`` gives its typed result
and the renderer registered for its name turns that into blocks (:class:`Text`, :class:`Table`,
:class:`Figure`, :class:`Code`); every section ends with the provenance of its results: the exact
command lines of the sweeps that produced them, the seeds, and the library versions of the
workers. Runs that belong to no recorded experiment get a generic table per unit kind.
:mod:`~layer_sim.report.html` and :mod:`~layer_sim.report.markdown` render the same
:class:`Document`.

Registering a section for a new experiment (in a module of ``layer_sim.report``, listed in
:data:`BUILTIN`)::

    from layer_sim.report.sections import Table, figure_block, section

    @section("my-experiment", title="My experiment")
    def _my_section(result, record):
        return [Table(result.records(), caption="What the table shows"),
                figure_block(my_figure(result), name="curves", caption="Alignment per epoch")]
"""

from __future__ import annotations

import importlib
import io
import json
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from layer_sim.errors import ConfigError, IncompleteError, LayerSimError
from layer_sim.experiments import get_experiment
from layer_sim.runs.spec import versions as library_versions
from layer_sim.store import Store
from layer_sim.store.sqlite import now_utc

__all__ = [
    "Text",
    "Table",
    "Figure",
    "Code",
    "Section",
    "Document",
    "ExperimentRecord",
    "section",
    "registered_sections",
    "figure_block",
    "build_report",
    "BUILTIN",
]

#: Modules whose import registers the library's own sections (add yours here).
BUILTIN = ("layer_sim.report.sanity", "layer_sim.report.seeds", "layer_sim.report.gradient_study",
           "layer_sim.report.pruning", "layer_sim.report.dynamics", "layer_sim.report.correlations",
           "layer_sim.report.table2_study")

# ---------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Text:
    """A paragraph of plain text (escaped in HTML, written as is in Markdown)."""

    text: str


@dataclass(frozen=True)
class Table:
    """Rows as records; ``columns`` (default: the first record's keys) with display ``headers``."""

    records: Sequence[Mapping[str, Any]]
    columns: Sequence[str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    digits: int = 1
    caption: str | None = None

    @property
    def keys(self) -> list[str]:
        return list(self.columns if self.columns is not None else (self.records[0] if self.records else []))


@dataclass(frozen=True)
class Figure:
    """A PNG image: ``name`` is its file stem in the Markdown twin, ``caption`` its alt text and caption."""

    png: bytes = field(repr=False)
    name: str
    caption: str


@dataclass(frozen=True)
class Code:
    """Preformatted text (command lines, JSON)."""

    text: str


Block = Text | Table | Figure | Code


@dataclass(frozen=True)
class Section:
    """A titled list of blocks; ``anchor`` is its HTML id and the prefix of its figure files."""

    title: str
    anchor: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Document:
    """A whole report: title, a few ``facts`` shown first (``(label, value)``), sections."""

    title: str
    facts: tuple[tuple[str, str], ...]
    sections: tuple[Section, ...]


def figure_block(fig, *, name: str, caption: str, dpi: int = 100) -> Figure:
    """A matplotlib ``Figure`` as a :class:`Figure` block (rendered to PNG once, shared by HTML and Markdown)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return Figure(buf.getvalue(), name, caption)


# ---------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class ExperimentRecord:
    """An experiment as the store holds it: key, name, spec, and the rows of its planned runs and sweeps."""

    key: str
    name: str
    spec: dict
    created: str
    runs: list[dict]
    sweeps: list[dict]


Renderer = Callable[[Any, ExperimentRecord], Iterable[Block]]
_SECTIONS: dict[str, tuple[str, Renderer]] = {}


def section(name: str, *, title: str) -> Callable[[Renderer], Renderer]:
    """Register the decorated ``render(result, record) -> blocks`` for experiments named ``name``.

    ``result`` is what the experiment's ``collect(store, spec)`` returns; ``record`` the
    :class:`ExperimentRecord`. ``title`` heads the section. The provenance (commands, seeds,
    versions) is added after the blocks by the report itself.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"section: name must be a non-empty string, got {name!r}")

    def register(render: Renderer) -> Renderer:
        known = _SECTIONS.get(name)
        if known is not None and known[1] is not render:
            raise ConfigError(f"section: {name!r} is already registered")
        _SECTIONS[name] = (title, render)
        return render

    return register


def registered_sections() -> list[str]:
    """Experiment names that have a registered section, sorted."""
    for module in BUILTIN:
        importlib.import_module(module)
    return sorted(_SECTIONS)


# ---------------------------------------------------------------------------- building


def _runs_by_key(runs) -> dict[str, dict]:
    out = {}
    for rec in runs.to_dict("records"):
        rec = {k: (None if _missing(v) else v) for k, v in rec.items()}
        rec["spec"] = json.loads(rec["spec"])
        out[rec["key"]] = rec
    return out


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _seeds(specs: Iterable[Mapping]) -> list[int]:
    """Every integer under a key ``seed`` or ``seeds`` anywhere in the unit specs."""
    found: set[int] = set()

    def walk(v):
        if isinstance(v, Mapping):
            for k, item in v.items():
                if k == "seed" and isinstance(item, int):
                    found.add(item)
                elif k == "seeds" and isinstance(item, list):
                    found.update(s for s in item if isinstance(s, int))
                else:
                    walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    for s in specs:
        walk(s)
    return sorted(found)


def _versions_text(rows: Iterable[Mapping]) -> list[str]:
    seen = []
    for r in rows:
        text = ", ".join(f"{c.removesuffix('_version')} {r[c]}" for c in
                         ("layer_sim_version", "torch_version", "numpy_version", "python_version") if r.get(c))
        if text and text not in seen:
            seen.append(text)
    return seen


def _command(sweep: Mapping) -> str:
    return shlex.join(sweep["command"])


def _provenance(runs: list[dict], sweeps: list[dict]) -> list[Block]:
    """Commands of the sweeps that produced these runs, their seeds, and the versions that ran them."""
    used = {r.get("sweep") for r in runs if r.get("status") == "done"}
    producing = [s for s in sweeps if s["id"] in used]
    blocks: list[Block] = [Text("Produced by these commands (one line per sweep that finished one of its units):")]
    if producing:
        blocks.append(Code("\n".join(dict.fromkeys(_command(s) for s in producing))))
        blocks.append(Table(
            [{"sweep": s["id"], "started": s["started"], "finished": s["finished"] or "did not finish",
              "units": s["units"], "done": s["done"], "skipped": s["skipped"], "failed": s["failed"],
              "driver": s["host"], "directory": s["cwd"]} for s in producing],
            caption="Sweeps", digits=0))
        blocks.append(Table(
            [{"sweep": s["id"], **{k: ("" if v is None else str(v)) for k, v in s["settings"].items()}} for s in producing],
            caption="Where the units ran (device, data and checkpoint directories, executor)", digits=0))
    else:
        blocks.append(Text("(no sweep recorded: the store predates schema version 2, or no unit is done)"))
    seeds = _seeds(r["spec"] for r in runs)
    if seeds:
        blocks.append(Text(f"Seeds: {', '.join(map(str, seeds))}."))
    vers = _versions_text(r for r in runs if r.get("status") == "done")
    if vers:
        blocks.append(Text("Library versions of the workers: " + "; ".join(vers) + "."))
    return blocks


def _status_line(runs: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def _experiment(name: str, spec: dict):
    """The registered experiment and its spec object; a spec this version cannot read is a ConfigError."""
    experiment = get_experiment(name)
    try:
        return experiment, experiment.spec_from_dict(spec)
    except (KeyError, TypeError, AttributeError) as exc:  # written by another version of the experiment
        raise ConfigError(f"experiment {name}: its recorded spec cannot be read by this version ({exc!r})") from None


def _anchor(text: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "section"
    anchor, k = base, 2
    while anchor in taken:
        anchor, k = f"{base}-{k}", k + 1
    taken.add(anchor)
    return anchor


def _experiment_section(store: Store, exp: ExperimentRecord, anchors: set[str]) -> Section:
    registered = _SECTIONS.get(exp.name)
    title = registered[0] if registered else exp.name
    anchor = _anchor(f"{exp.name}-{exp.key[:8]}", anchors)
    blocks: list[Block] = [Text(f"Experiment {exp.name}, key {exp.key}, first recorded {exp.created}; "
                                f"{len(exp.runs)} units ({_status_line(exp.runs)}).")]
    try:
        experiment, spec = _experiment(exp.name, exp.spec)
        result = experiment.collect(store, spec)
    except IncompleteError as exc:
        blocks.append(Text(f"Not complete, so not shown: {exc}"))
        failed = [r for r in exp.runs if r["status"] == "failed"]
        if failed:
            blocks.append(Table([{"key": r["key"][:12], "kind": r["kind"], "error": r["error"]} for r in failed],
                                caption="Failed units"))
    except LayerSimError as exc:  # an unknown experiment (its module is not installed here), a damaged artefact
        blocks.append(Text(f"Cannot be shown: {exc}"))
    else:
        if registered is None:
            blocks.append(Text(f"No report section is registered for experiment {exp.name!r}; its runs:"))
            blocks.extend(_runs_blocks(exp.runs, store))
        else:
            blocks.extend(registered[1](result, exp))
    blocks.append(Text("Spec of the experiment:"))
    blocks.append(Code(json.dumps(exp.spec, sort_keys=True, ensure_ascii=False)))
    blocks.extend(_provenance(exp.runs, exp.sweeps))
    return Section(title, anchor, tuple(blocks))


#: Metrics shown per run in the generic table of a unit kind.
_GENERIC_METRICS = 6
#: Runs shown per unit kind in the generic table.
_GENERIC_ROWS = 200


def _runs_blocks(runs: list[dict], store: Store) -> list[Block]:
    metrics = store.metrics(status=None)
    per_run: dict[str, dict[str, float]] = {}
    for key, name, value in zip(metrics["key"], metrics["name"], metrics["value"]):
        per_run.setdefault(key, {})[name] = float(value)
    records = []
    for r in runs[:_GENERIC_ROWS]:
        m = per_run.get(r["key"], {})
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list(m.items())[:_GENERIC_METRICS])
        records.append({"key": r["key"][:12], "spec": json.dumps(r["spec"], sort_keys=True, ensure_ascii=False),
                        "status": r["status"], "seconds": r["seconds"],
                        "metrics / error": shown + (", …" if len(m) > _GENERIC_METRICS else "") or (r["error"] or "")})
    blocks: list[Block] = [Table(records, digits=2)]
    if len(runs) > _GENERIC_ROWS:
        blocks.append(Text(f"… and {len(runs) - _GENERIC_ROWS} more (layer-sim runs list shows them all)."))
    return blocks


def build_report(store: Store) -> Document:
    """The :class:`Document` of everything ``store`` holds (read in one snapshot)."""
    registered_sections()  # load the built-in renderers
    anchors: set[str] = set()
    with store.snapshot():
        runs = _runs_by_key(store.runs())
        sweeps = store.sweeps().to_dict("records")
        sweeps = [{k: (None if _missing(v) and k != "command" else v) for k, v in s.items()} for s in sweeps]
        experiments = store.experiments().to_dict("records")
        counts = store.counts()
        out: list[Section] = []
        claimed: set[str] = set()
        for e in experiments:
            try:
                experiment, spec = _experiment(e["name"], e["spec"])
                keys = [u.key for u in experiment.units(spec)]
            except LayerSimError:
                keys = [r["key"] for r in runs.values() if any(s["experiment"] == e["key"] and s["id"] == r.get("sweep")
                                                               for s in sweeps)]
            claimed.update(keys)
            rec = ExperimentRecord(e["key"], e["name"], e["spec"], e["created"], [runs[k] for k in keys if k in runs],
                                   [s for s in sweeps if s["experiment"] == e["key"]])
            out.append(_experiment_section(store, rec, anchors))
        rest: dict[str, list[dict]] = {}
        for key, r in runs.items():
            if key not in claimed:
                rest.setdefault(r["kind"], []).append(r)
        for kind, kind_runs in sorted(rest.items()):
            blocks = [Text(f"{len(kind_runs)} runs of unit kind {kind} that belong to no recorded experiment "
                           f"({_status_line(kind_runs)}).")]
            blocks += _runs_blocks(kind_runs, store)
            blocks += _provenance(kind_runs, sweeps)
            out.append(Section(f"Runs of kind {kind}", _anchor(f"kind-{kind}", anchors), tuple(blocks)))
    facts = (("store", str(store.path)), ("schema version", str(store.schema_version)),
             ("runs", ", ".join(f"{n} {s}" for s, n in counts.items())),
             ("experiments", str(len(experiments))), ("sweeps", str(len(sweeps))),
             ("generated", f"{now_utc()} by layer_sim {library_versions().get('layer_sim')}"))
    if not out:
        out.append(Section("Empty store", "empty", (Text("The store holds no runs yet."),)))
    return Document("layer_sim report", facts, tuple(out))
