"""The notebook's page (`python -m runner report FOLDER`, dashboards/report/lab.py) from real runs: its
table, its links to each run's report, its curves and parallel coordinates, nothing fetched from
anywhere; and in headless Chromium, with every request but the page's own refused, its filter and its
sorting (rows hidden by the filter hide their curves). The screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from helpers import ROOT, run_cli
from chromium import page as chromium_page
from test_browser import require_browser

sys.path.insert(0, str(ROOT / "benchmarks"))
import lab as bench  # noqa: E402  (make_real_runs: the benchmark makes its runs the same way)

from dashboards.report.page import plotly_js  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
MARKUP = "<script>alert(1)</script><b>x</b>"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real runs of the tiny data: a sweep of two learning rates and a tracked run, one with a note of markup."""
    made = bench.make_real_runs(tmp_path_factory.mktemp("labpage"), lrs=(0.3, 0.05), cnn=False)
    done = run_cli("note", str(made["variant1"]), MARKUP)
    assert done.returncode == 0, done.stderr
    return made


def figures(text: str) -> dict[str, dict[str, Any]]:
    found = re.search(r'<script type="application/json" id="figures">(.*?)</script>', text, re.S)
    assert found is not None
    return {f["id"]: f for f in json.loads(found.group(1))}


def rows(text: str) -> list[str]:
    return re.findall(r'<tr data-i="\d+">(.*?)</tr>', text, re.S)


def test_the_page_of_a_folder_of_runs(real: dict[str, Path], tmp_path: Path) -> None:
    folder = real["sweep"].parent
    done = run_cli("report", str(folder))
    assert done.returncode == 0 and done.stdout.strip() == f"report: {folder / 'lab.html'}", done.stderr
    text = (folder / "lab.html").read_text()
    assert len(rows(text)) == 3 and 'id="runs-table"' in text and 'class="sortable"' in text
    links = re.findall(r'<a href="([^"]+)">', text)
    assert sorted(links) == sorted(f"{real['sweep'].name}/{v.name}/report.html" for v in (real["variant0"],
                                                                                        real["variant1"]))
    assert all((folder / unquote(link)).is_file() for link in links)
    charts = figures(text)
    assert {"train_loss", "test_accuracy", "test_loss", "parallel"} <= set(charts)
    assert any(f["layout"]["title"]["text"].startswith("train/loss") for f in charts.values())  # the tracked run's
    labels = {i: html.unescape(re.search(r'<td class=text data-v="([^"]*)"', row).group(1))
              for i, row in enumerate(rows(text))}
    for trace in charts["test_accuracy"]["data"]:
        assert labels[int(trace["meta"])] == html.unescape(trace["name"])  # the filter hides a row's own curves
    assert {d["label"] for d in charts["parallel"]["data"][0]["dimensions"]} >= {"lr", "test accuracy"}
    assert MARKUP not in text and html.escape(MARKUP) in text
    rest = text.replace(plotly_js(), "")  # plotly.js names its own web site in strings it never fetches
    assert "http://" not in rest and "https://" not in rest and "//" not in "".join(links)
    assert not re.search(r'\bsrc="(?!data:)', rest)
    done = run_cli("report", str(folder), "--where", "optim.lr=0.3", "-o", str(tmp_path / "out" / "one.html"))
    assert done.returncode == 0, done.stderr
    one = (tmp_path / "out" / "one.html").read_text()
    assert len(rows(one)) == 1 and "tiny-lr_0.3" in rows(one)[0] and "optim.lr=0.3" in one
    link = re.search(r'<a href="([^"]+)">', one).group(1)
    assert (tmp_path / "out" / unquote(link)).resolve() == (real["variant1"] / "report.html").resolve()


READY = "() => document.querySelectorAll('.chart svg.main-svg .scatterlayer').length >= 3"
VISIBLE = """() => ({
  rows: Array.from(document.querySelectorAll('#runs-table tbody tr')).filter(r => r.style.display !== 'none')
             .map(r => r.cells[0].textContent),
  traces: Array.from(document.querySelectorAll('.chart')).filter(c => c.id === 'test_accuracy')
             .flatMap(c => c.data.map(t => [t.name, t.visible !== false])),
  shown: document.getElementById('shown').textContent,
})"""
METRICS = "() => Array.from(document.querySelectorAll('#runs-table tbody tr'), r => r.cells[3].getAttribute('data-v'))"


def test_the_page_filters_and_sorts_offline_in_chromium(real: dict[str, Path]) -> None:
    require_browser()
    folder = real["sweep"].parent
    assert run_cli("report", str(folder)).returncode == 0
    path = folder / "lab.html"
    requests: list[str] = []
    problems: list[str] = []

    def route(r: Any) -> None:
        requests.append(r.request.url)
        r.continue_() if r.request.url == path.as_uri() else r.abort()

    with chromium_page({"width": 1400, "height": 1000}) as page:
        page.route("**/*", route)
        page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
        page.on("dialog", lambda d: (problems.append(f"a dialog: {d.message}"), d.dismiss()))
        page.goto(path.as_uri())
        page.wait_for_function(READY, timeout=30_000)
        everything = page.evaluate(VISIBLE)
        page.fill("#filter", "optim.lr=0.3")
        one = page.evaluate(VISIBLE)
        page.fill("#filter", "status=finished metric>0.5 tiny")
        two = page.evaluate(VISIBLE)
        page.fill("#filter", "")
        page.click("#runs-table th:nth-child(4)")
        up = page.evaluate(METRICS)
        page.click("#runs-table th:nth-child(4)")
        down = page.evaluate(METRICS)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "lab.png"), full_page=True)
    see = f"(screenshot: {ARTIFACTS / 'lab.png'})"
    assert problems == [] and requests == [path.as_uri()], (problems, requests, see)
    assert len(everything["rows"]) == 3 and all(visible for _, visible in everything["traces"]), see
    assert [r.rsplit("/", 1)[-1] for r in one["rows"]] == ["tiny-lr_0.3"] and one["shown"] == "1 of 3 runs", see
    assert [name.rsplit("/", 1)[-1] for name, visible in one["traces"] if visible] == ["tiny-lr_0.3"], see
    assert len(two["rows"]) == 2 and all("tiny-lr" in r for r in two["rows"]), see
    numbers = [float(v) for v in up if v]
    assert numbers == sorted(numbers) and [float(v) for v in down if v] == sorted(numbers, reverse=True), see


def test_a_metric_name_of_markup_is_escaped_in_the_charts(real: dict[str, Path], tmp_path: Path) -> None:
    """A run someone sent, whose journal names a metric in markup (runner.track would refuse the name)."""
    run = tmp_path / "runs" / real["tracked"].name
    shutil.copytree(real["tracked"], run)
    name = '<img src=x onerror="alert(1)">loss'
    for file in ("metrics.jsonl", "summary.json"):
        text = (run / file).read_text()
        (run / file).write_text(text.replace('"train/loss"', json.dumps(name)))
    done = run_cli("report", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "runs" / "lab.html").read_text()
    charts = [f for f in figures(text).values() if f["id"].startswith("metric_")]
    assert any(f["layout"]["yaxis"]["title"]["text"] == html.escape(name) for f in charts), charts
    assert name not in text and "<img" not in text
