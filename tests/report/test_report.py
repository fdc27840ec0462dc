"""The report of a store: registered sections (a fake experiment), provenance, generic runs, incomplete and unknown
experiments, the HTML page and its Markdown twin, old stores, and reading while a sweep writes."""

import base64
import html
import re
import threading
import time

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

import _fake_experiment as fake
from layer_sim.cli import app
from layer_sim.errors import ConfigError, IncompleteError, UnitsFailedError
from layer_sim.experiments import experiment_key, run_experiment
from layer_sim.report.html import render_html
from layer_sim.report.markdown import render_markdown
from layer_sim.report.sections import Figure, Table, Text, build_report, registered_sections, section
from layer_sim.runs import Unit, UnitResult, run_sweep, unit_kind
from layer_sim.store import Store

COMMAND = ["layer-sim", "fake-powers", "--p", "3"]


@unit_kind("fake.slow")
def slow(spec, context):
    time.sleep(spec["sleep"])
    if spec.get("fail"):
        raise RuntimeError(f"unit {spec['i']} <fails> on purpose")
    return UnitResult(metrics={"i": spec["i"]})


def _img_sources(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "results.sqlite"
    run_experiment(fake.POWERS, fake.PowersSpec((2, 3, 5), 3, label="a <b> & c"), path, command=COMMAND)
    run_sweep([Unit("fake.slow", {"i": i, "sleep": 0}) for i in range(2)], path, command=["python", "script.py"])
    return path


def test_the_registered_section_renders_collect_s_result_with_its_provenance(store):
    with Store(store) as s:
        doc = build_report(s)
    titles = [sec.title for sec in doc.sections]
    assert titles == ["Fake powers", "Runs of kind fake.slow"]
    blocks = doc.sections[0].blocks
    table = next(b for b in blocks if isinstance(b, Table) and b.caption == "x to the power p")
    # the values are x ** 3, computed here, not read from the code under test
    assert [(r["x"], r["value"]) for r in table.records] == [(2, 8.0), (3, 27.0), (5, 125.0)]
    texts = [b.text for b in blocks if isinstance(b, Text)]
    key = experiment_key(fake.NAME, fake.PowersSpec((2, 3, 5), 3, label="a <b> & c"))
    assert any(key in t and "3 units (3 done)" in t for t in texts)
    assert "Seeds: 2, 3, 5." in texts and any(t.startswith("Library versions of the workers: layer_sim ") for t in texts)
    page = render_html(doc)
    # the exact command line of the sweep, escaped once; the label escaped
    assert "layer-sim fake-powers --p 3" in page and "a &lt;b&gt; &amp; c" in page and "<b>" not in page
    assert "python script.py" in page  # the bare sweep's command, in the generic section


def test_every_image_is_an_embedded_png_that_decodes(store, tmp_path):
    with Store(store) as s:
        page = render_html(build_report(s))
    sources = _img_sources(page)
    assert len(sources) == 1 and all(src.startswith("data:image/png;base64,") for src in sources)
    png = base64.b64decode(sources[0].split(",", 1)[1], validate=True)
    (tmp_path / "x.png").write_bytes(png)
    pixels = imread(tmp_path / "x.png")
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50 and pixels.std() > 0.01  # not blank
    # nothing is loaded from elsewhere: no http(s) or file URL, no script
    assert not re.search(r'(src|href)="(https?:|file:|//)', page) and "<script" not in page


def test_the_markdown_twin_holds_the_same_tables_and_links_its_figure_files(store, tmp_path):
    runner = CliRunner()
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "--store", str(store), "--output", str(out)])
    assert result.exit_code == 0, result.output
    md = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links == [f"figures/{p.name}" for p in sorted((out / "figures").iterdir())] and len(links) == 1
    assert (out / links[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 5 | 125.000 |" in md and "layer-sim fake-powers --p 3" in md
    page = (out / "report.html").read_text()
    assert page.count("<table>") == md.count("|---|")  # every table in both


def _broken_plan(spec):  # the fake experiment plus a unit that always fails
    return [[*fake.plan(spec)[0], Unit("fake.slow", {"i": 9, "sleep": 0, "fail": True})]]


BROKEN = fake.register_experiment(fake.Experiment(
    "fake-broken", fake.PowersSpec.from_dict, _broken_plan,
    lambda store, spec: fake.done_runs(store, _broken_plan(spec)[0], what="fake-broken")))


def test_failed_units_make_an_incomplete_section_and_the_error_is_shown(tmp_path):
    path = tmp_path / "results.sqlite"
    spec = fake.PowersSpec((2,), 1)
    exp = BROKEN
    with pytest.raises(UnitsFailedError, match=r"1 of 2 units of stage 1 failed .*unit 9 <fails> on purpose.*rerun"):
        run_experiment(exp, spec, path, retries=0)
    with Store(path) as s, pytest.raises(IncompleteError, match="1 of 2 units are not done"):
        exp.collect(s, spec)  # collect says so too
    with Store(path) as s:
        page = render_html(build_report(s))
    assert "Not complete, so not shown" in page and "unit 9 &lt;fails&gt; on purpose" in page


def test_an_experiment_this_installation_does_not_know_is_reported_not_fatal(tmp_path):
    path = tmp_path / "results.sqlite"
    with Store(path, write=True) as s:
        s.record_experiment("k" * 24, name="from-a-newer-layer-sim", spec_json='{"x":1}')
    with Store(path) as s:
        page = render_html(build_report(s))
    assert "Cannot be shown: experiment: unknown experiment &#x27;from-a-newer-layer-sim&#x27;" in page


def test_sections_are_registered_once_per_name():
    assert {"sanity-check", "train", fake.NAME} <= set(registered_sections())
    with pytest.raises(ConfigError, match="already registered"):
        section(fake.NAME, title="again")(lambda result, record: [])


def test_reports_can_be_built_while_a_sweep_writes(tmp_path):
    path = tmp_path / "results.sqlite"
    units = [Unit("fake.slow", {"i": i, "sleep": 0.15}) for i in range(8)]
    thread = threading.Thread(target=run_sweep, args=(units, path))
    thread.start()
    seen = []
    try:
        while thread.is_alive():
            if path.exists():
                with Store(path) as s:
                    doc = build_report(s)
                (section,) = doc.sections
                seen.append(section.blocks[0].text)
            time.sleep(0.05)
    finally:
        thread.join()
    done = [int(re.search(r"(\d+) done", t).group(1)) if "done" in t else 0 for t in seen]
    assert done == sorted(done) and len(set(done)) > 2, seen  # readers saw the sweep progress, never go back


def test_an_empty_store_gives_a_page_that_says_so(tmp_path):
    path = tmp_path / "results.sqlite"
    Store(path, write=True).close()
    with Store(path) as s:
        doc = build_report(s)
    assert [b.text for b in doc.sections[0].blocks] == ["The store holds no runs yet."]
    text, figures = render_markdown(doc)
    assert figures == {} and "no runs yet" in text


def test_figure_blocks_hold_png_and_escape_captions():
    from matplotlib.figure import Figure as MplFigure

    from layer_sim.report.sections import Document, Section, figure_block

    fig = MplFigure(figsize=(1, 1))
    fig.add_subplot().imshow(np.eye(3))
    block = figure_block(fig, name="eye", caption='3 < 4 & "x"')
    assert isinstance(block, Figure) and block.png[:4] == b"\x89PNG"
    page = render_html(Document("t", (), (Section("s", "s", (block,)),)))
    assert 'alt="3 &lt; 4 &amp; &quot;x&quot;"' in page
    assert html.unescape(re.search(r"<figcaption>(.*?)</figcaption>", page).group(1)) == '3 < 4 & "x"'


def test_a_spec_this_version_cannot_read_is_reported_not_fatal(tmp_path):
    path = tmp_path / "results.sqlite"
    with Store(path, write=True) as s:  # the experiment exists, but its spec lacks a field
        s.record_experiment("k" * 24, name=fake.NAME, spec_json='{"xs":[1]}')
    with Store(path) as s:
        page = render_html(build_report(s))
    assert f"Cannot be shown: experiment {fake.NAME}: its recorded spec cannot be read by this version" in page
