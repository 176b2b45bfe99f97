"""Reports as a reader sees them: real runs write report.html, headless Chromium opens it from disk
with every request outside file:// refused and recorded.

Checked: every chart renders (a plotly SVG with drawn lines in each), no request leaves the page,
no script error, the sample images decode, text from the run shows as text (a description made of
markup neither runs nor formats), and the sweep's results table sorts. Screenshots are kept in
test-artifacts/ and named in failure messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import ROOT, run_cli, tiny_spec
from chromium import page as chromium_page
from test_browser import require_browser

ARTIFACTS = ROOT / "test-artifacts"
# A short run's insight line charts: no look at the weights in its 24 steps; the machine's load
# sampled at its start and its end, however short it is
INSIGHT_LINES = {"activations_mean", "activations_std", "activations_zeros", "system_load", "system_memory"}
MARKUP = "<script>alert(1)</script><b>x</b>"
RENDER_TIMEOUT_MS = 30_000

# Per chart: its id, SVGs plotly made in it, and the drawn lines (path d attributes).
CHARTS_JS = """() => Array.from(document.querySelectorAll('.chart'), c => ({
  id: c.id,
  svgs: c.querySelectorAll('svg.main-svg').length,
  bars: c.querySelectorAll('.barlayer .trace path').length,
  heatmap: c.querySelectorAll('.heatmaplayer image').length,
  lines: Array.from(c.querySelectorAll('.scatterlayer .trace path.js-line'), p => p.getAttribute('d') || ''),
  fills: c.querySelectorAll('.scatterlayer .trace path.js-fill').length,
  points: c.querySelectorAll('.scatterlayer .trace .points path').length,
}))"""
# Drawn: lines (scatter), bars, or a heatmap's image.
DRAWN = "svg.main-svg .scatterlayer .trace, svg.main-svg .barlayer .trace, svg.main-svg .heatmaplayer image"
READY_JS = f"""() => {{ const charts = document.querySelectorAll('.chart');
  return charts.length > 0 && Array.from(charts).every(c => c.querySelector('{DRAWN}')); }}"""


def open_report(path: Path, shot: Path, actions: Any = None) -> tuple[dict[str, Any], list[str], list[str]]:
    """Open the report file offline; returns what the page shows, the requests it made, and problems."""
    from playwright.sync_api import Error as PlaywrightError

    requests: list[str] = []
    problems: list[str] = []

    def route(r: Any) -> None:
        requests.append(r.request.url)
        if r.request.url == path.as_uri():
            r.continue_()
        else:
            r.abort()

    with chromium_page({"width": 1300, "height": 900}) as page:
        page.route("**/*", route)
        page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
        page.on("dialog", lambda d: (problems.append(f"a dialog opened: {d.message}"), d.dismiss()))
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.goto(path.as_uri())
        try:
            page.wait_for_function(READY_JS, timeout=RENDER_TIMEOUT_MS)
        except PlaywrightError as exc:
            problems.append(f"the charts did not render: {exc.message.splitlines()[0]}")
        seen = {
            "charts": page.evaluate(CHARTS_JS),
            "description": page.evaluate("() => { const d = document.getElementById('description');"
                                         " return d && {text: d.innerText, children: d.children.length}; }"),
            "images": page.evaluate("() => Array.from(document.querySelectorAll('.samples img'),"
                                    " i => [i.complete, i.naturalWidth, i.naturalHeight])"),
            "captions": page.evaluate("() => Array.from(document.querySelectorAll('figcaption'),"
                                      " c => c.innerText)"),
            "scripts": page.evaluate("() => document.scripts.length"),
        }
        if actions is not None:
            seen.update(actions(page))
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    return seen, requests, problems


def check_charts(seen: dict[str, Any], expected: set[str], see: str, others: set[str] = frozenset()) -> None:
    """The line charts `expected` each draw a line; `others` (bars, heatmaps) are drawn their way."""
    ids = {c["id"] for c in seen["charts"]}
    assert ids == expected | others, f"charts {sorted(ids)}, expected {sorted(expected | others)} {see}"
    for chart in seen["charts"]:
        assert chart["svgs"] >= 1, f"chart {chart['id']} has no plotly SVG {see}"
        drawn = [d for d in chart["lines"] if any(segment in d for segment in "LHV")]  # HV: a step curve
        drawn = drawn or chart["points"]  # a line of one sample is its marker
        assert drawn or chart["id"] in others and (chart["bars"] or chart["heatmap"]), \
            f"chart {chart['id']} draws nothing: {chart} {see}"


def test_a_run_report_renders_offline_with_text_escaped(tiny_mnist: Path, tmp_path: Path) -> None:
    require_browser()
    spec = tiny_spec(tmp_path, tiny_mnist, description=MARKUP)
    run = run_cli(str(spec), "--logger", "null", "--out", str(tmp_path / "run"))
    assert run.returncode == 0, f"the run failed:\n{run.stdout}\n{run.stderr}"
    path = tmp_path / "run" / "report.html"
    assert f"report: {path}" in run.stdout, run.stdout

    shot = ARTIFACTS / "report-run.png"
    seen, requests, problems = open_report(path, shot)
    see = f"(screenshot: {shot})"
    assert not problems, "\n".join(problems) + f"\n{see}"
    assert requests == [path.as_uri()], f"requests beyond the file itself: {requests} {see}"
    check_charts(seen, {"train_loss", "test_loss", "test_accuracy", "metric_0",  # metric_0: lr
                        *INSIGHT_LINES}, see, others={"confusion", "per_class"})
    assert seen["description"] == {"text": MARKUP, "children": 0}, f"description: {seen['description']} {see}"
    assert seen["scripts"] == 3, f"{seen['scripts']} script elements: markup became a script {see}"
    images = seen["images"]
    assert len(images) == 8 and all(i == [True, 28, 28] for i in images), f"sample images: {images} {see}"
    assert len(seen["captions"]) == 8 and all(c.strip() for c in seen["captions"]), seen["captions"]


SORT_JS = """(column) => {
  const table = document.getElementById('results-table');
  const index = Array.from(table.tHead.rows[0].cells).findIndex(th => th.textContent.trim() === column);
  const read = () => Array.from(table.tBodies[0].rows, r => r.cells[index].getAttribute('data-v'));
  table.tHead.rows[0].cells[index].click();
  const up = read();
  table.tHead.rows[0].cells[index].click();
  return {up: up, down: read()};
}"""


def test_a_sweep_report_renders_bands_and_sorts(tiny_mnist: Path, tmp_path: Path) -> None:
    require_browser()
    spec = tiny_spec(tmp_path, tiny_mnist, description=MARKUP, train={"epochs": 2},
                     sweep={"model.activation": ["relu", "selu"], "seed": [0, 1]})
    run = run_cli(str(spec), "--logger", "null", "--out", str(tmp_path / "sweep"))
    assert run.returncode == 0, f"the sweep failed:\n{run.stdout}\n{run.stderr}"
    path = tmp_path / "sweep" / "report.html"
    assert f"report: {path}" in run.stdout, run.stdout
    assert run.stdout.count("report: ") == 5  # one per variant, one for the sweep

    shot = ARTIFACTS / "report-sweep.png"
    seen, requests, problems = open_report(path, shot, lambda page: {"sorted": page.evaluate(SORT_JS, "final loss")})
    see = f"(screenshot: {shot})"
    assert not problems, "\n".join(problems) + f"\n{see}"
    assert requests == [path.as_uri()], f"requests beyond the file itself: {requests} {see}"
    check_charts(seen, {"train_loss", "test_accuracy", "test_loss", "metric_0"}, see)
    for chart in seen["charts"]:  # two variants of two seeds each: a band per variant
        assert chart["fills"] >= 2, f"chart {chart['id']} has {chart['fills']} seed bands {see}"
    assert seen["description"] == {"text": MARKUP, "children": 0}, f"description: {seen['description']} {see}"
    up, down = ([float(v) for v in seen["sorted"][k]] for k in ("up", "down"))
    assert up == sorted(up) and down == sorted(down, reverse=True) and len(up) == 4, seen["sorted"]


@pytest.fixture(autouse=True)
def _no_stray_reports_in_the_project() -> Any:
    """Runs here use --out under tmp_path; nothing may land in the project's runs/."""
    before = set((ROOT / "runs").glob("*")) if (ROOT / "runs").is_dir() else set()
    yield
    after = set((ROOT / "runs").glob("*")) if (ROOT / "runs").is_dir() else set()
    assert after == before
