"""The report page in a real browser: headless Chromium renders it, nothing is blank or broken, the console is silent.

Debian's ``chromium`` (installed by ``.ci/run``). Where it is missing the tests say so and skip,
except under ``CI=true``, where they fail. Each check is first shown to catch a page that is
broken in that way (a blank page, a broken image, a script error), so that a pass means something.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

import _fake_experiment as fake
from layer_sim.cli import app
from layer_sim.experiments import run_experiment
from layer_sim.experiments.gradient_study import GradientStudySpec, run_gradient_study
from layer_sim.experiments.sanity import Row, sanity_check
from layer_sim.training import NetworkSpec

#: Appended to a copy of the page: once everything has loaded, write how many images there are
#: and how many did not decode into an element that ``--dump-dom`` prints.
CHECK_SCRIPT = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const marker = document.createElement("div");
  marker.id = "layer-sim-check";
  marker.textContent = `images=${images.length} broken=${broken}`;
  document.body.appendChild(marker);
});</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is not installed, and CI must run the browser test (.ci/run installs Debian's chromium)")
        pytest.skip("Chromium is not installed (apt-get install -y chromium): the report is not tested in a browser here")
    return found


def _run(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False)


def screenshot(chromium: str, page: Path, tmp: Path) -> np.ndarray:
    """The page rendered at 1200 x 1600 CSS pixels, as an (H, W, channels) array in [0, 1]."""
    shot = tmp / f"{page.stem}.png"
    proc = _run(chromium, tmp, f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars",
                page.as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    return imread(shot)


def dom_check(chromium: str, page: Path, tmp: Path) -> tuple[tuple[int, int], list[str]]:
    """``(images, broken)`` as the browser saw them after loading, and every console message of the page."""
    checked = tmp / f"{page.stem}-checked.html"
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    proc = _run(chromium, tmp, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
                checked.as_uri())
    found = re.search(r'<div id="layer-sim-check">images=(\d+) broken=(\d+)</div>', proc.stdout)
    assert found, f"the check never ran: {proc.stdout[-500:]} {proc.stderr[-2000:]}"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return (int(found.group(1)), int(found.group(2))), console


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of a store holding a tiny sanity check, a tiny gradient study on the same networks and the fake
    experiment, written by the CLI."""
    tmp = tmp_path_factory.mktemp("browser")
    store = tmp / "results.sqlite"
    tiny = NetworkSpec().replace(widths=(784, 24, 20, 10), epochs=1, limit_train=1500)
    sanity_check(store=store, nets=3, examples=60, config=tiny, cache_dir=tmp / "cache",
                 rows=(Row("CKA (Linear)", "linear_cka", {}, 99.3), Row("SVCCA (ρ̄)", "svcca_rho", {}, 9.9)),
                 architectures={"deep": (784, 16, 16, 16, 10)}, command=["layer-sim", "sanity-check", "--nets", "3"])
    _, (networks, _) = run_gradient_study(GradientStudySpec(tiny, nets=3, examples=60, trajectory_seeds=(0, 1)), store,
                                          cache_dir=tmp / "cache", command=["layer-sim", "gradient-study", "--nets", "3"])
    assert networks.skipped == 1  # the sanity check's network unit, done already
    run_experiment(fake.POWERS, fake.PowersSpec((1, 2, 3), 2), store, command=["layer-sim", "fake"])
    result = CliRunner().invoke(app, ["report", "--store", str(store), "--output", str(tmp / "out")])
    assert result.exit_code == 0, result.output
    return tmp / "out" / "report.html"


def test_the_page_renders_not_blank(report, tmp_path):
    chromium = _chromium()
    pixels = screenshot(chromium, report, tmp_path)[..., :3]
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert screenshot(chromium, blank, tmp_path)[..., :3].var() < 1e-6  # the criterion can fail
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.var() > 1e-3, "the screenshot of the report is (almost) one colour"
    # not just text: a good part of the first screen is neither white nor the text colour (figures)
    assert ((pixels < 0.9).any(axis=-1)).mean() > 0.05


def test_every_image_decodes_and_the_console_is_silent(report, tmp_path):
    chromium = _chromium()
    page = report.read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]*)"', page)
    # 4 sanity check, 3 gradient study (side-by-side heatmaps, per-layer accuracy, curves), 1 fake
    assert len(sources) == 8 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "Gradient CKA vs vanilla CKA (Tang et al. 2020)" in page
    (images, broken), console = dom_check(chromium, report, tmp_path)
    assert (images, broken) == (8, 0) and console == [], console

    bad = tmp_path / "bad.html"  # the same checks catch a broken image and a script error
    bad.write_text('<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA">'
                   '<script>throw new Error("boom")</script></body></html>')
    (images, broken), console = dom_check(chromium, bad, tmp_path)
    assert (images, broken) == (1, 1) and any("boom" in line for line in console)
