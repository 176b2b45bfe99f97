"""The dashboard as a user sees it: a real run streams to a real server, headless Chromium renders the env.

Other tests check what the server holds; this one checks that the page draws it: every window with its
title, plotly lines with points, the digit grid decoded, the prediction table and spec as text (not as
escaped markup), no script errors and no request leaving the local server. A full-page screenshot is
kept in test-artifacts/ and named in every failure message.

Chromium is not optional here: without it the test fails and says how to install it.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from dashboards.visdom.server import Server
from chromium import CHROMIUM, page as chromium_page
from helpers import ROOT, run_cli, tiny_spec

ARTIFACTS = ROOT / "test-artifacts"
RENDER_TIMEOUT_MS = 30_000
SETTLE_S = 0.5  # the grid animates windows into place: positions must hold this long

TITLES = {"run", "train loss", "test", "learning rate", "test batch", "predictions", "spec",
          # the insight windows a run of the tiny data makes (too few steps for the weights' histograms)
          "confusion matrix", "accuracy per class", "most confident mistakes",
          "mistakes: predicted ✗ (true) confidence", "activation mean per layer", "activation spread (std) per layer", "zeros per layer (dead units)"}
SOMETIMES = {"system load", "memory"}  # when the run lasts past its first system sample
SAMPLES = 8  # tiny_spec's train.samples: digits in the grid, cells in the prediction table
EPOCHS = 2  # tiny_spec's train.epochs

# Everything the assertions need, read from the page in one go: [title, window] per window.
COLLECT_JS = """() => {
  const windows = [];
  for (const item of document.querySelectorAll('.react-grid-item')) {
    const win = item.querySelector('.window');
    const title = win.querySelector('.bar > div.pull-right');
    const box = item.getBoundingClientRect();
    const content = win.querySelector('.content');
    const img = win.querySelector('img');
    windows.push([title ? title.textContent.trim() : '?', {
      box: [box.left, box.top, box.right, box.bottom].map(Math.round),
      traces: Array.from(win.querySelectorAll('.scatterlayer .trace path.js-line'),
                         p => p.getAttribute('d') || ''),
      legend: Array.from(win.querySelectorAll('.legendtext'), t => t.textContent),
      image: img && {complete: img.complete, naturalWidth: img.naturalWidth,
                     naturalHeight: img.naturalHeight, width: img.getBoundingClientRect().width,
                     height: img.getBoundingClientRect().height},
      cells: win.querySelectorAll('td').length,
      text: content ? content.innerText : '',
    }]);
  }
  return windows;
}"""

# Ready when every window is there and drawn; a page that never gets there is still screenshotted.
READY_JS = """(titles) => {
  const bars = Array.from(document.querySelectorAll('.window .bar > div.pull-right'), d => d.textContent.trim());
  const img = document.querySelector('.window img');
  return titles.every(t => bars.includes(t))
      && document.querySelectorAll('.scatterlayer .trace path.js-line').length >= 3
      && img !== null && img.complete && img.naturalWidth > 0;
}"""


def require_browser() -> None:
    """Fail (never skip) when Playwright or Chromium is missing, before any time is spent on a run."""
    if importlib.util.find_spec("playwright") is None:
        pytest.fail("the browser test needs playwright: pip install -e '.[test]'")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is not at {CHROMIUM}; this test needs it and does not skip. Install it "
                    "(Debian/Ubuntu: apt-get install chromium) or point CHROMIUM=/path/to/chromium at one. "
                    "Playwright's own browser download is not used.")


def settled(page: Any, timeout: float = 10.0) -> list[tuple[str, dict[str, Any]]]:
    """The windows once no window has moved or resized for SETTLE_S (or at `timeout`)."""
    windows = page.evaluate(COLLECT_JS)
    since, deadline = time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < SETTLE_S and time.monotonic() < deadline:
        time.sleep(0.1)
        now = page.evaluate(COLLECT_JS)
        if [w["box"] for _, w in now] != [w["box"] for _, w in windows]:
            since = time.monotonic()
        windows = now
    return [(title, window) for title, window in windows]


def overlaps(windows: dict[str, Any], slack: int = 2) -> list[str]:
    """Pairs of windows that cover each other by more than `slack` pixels each way."""
    found = []
    names = sorted(windows)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (al, at, ar, ab), (bl, bt, br, bb) = windows[a]["box"], windows[b]["box"]
            if min(ar, br) - max(al, bl) > slack and min(ab, bb) - max(at, bt) > slack:
                found.append(f"{a} {windows[a]['box']} / {b} {windows[b]['box']}")
    return found


def render(url: str, shot: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Open `url` in headless Chromium, wait for the dashboard, screenshot it to `shot`.

    Returns the windows as COLLECT_JS reads them and the problems seen on the way (script errors,
    failed or non-local requests, a render that timed out).
    """
    from playwright.sync_api import Error as PlaywrightError

    problems: list[str] = []
    host = urlsplit(url).netloc
    with chromium_page() as page:
        page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
        # Offline means offline: every script, style and font comes from the local server.
        page.on("request", lambda r: problems.append(f"request off the local server: {r.url}")
                if urlsplit(r.url).scheme in ("http", "https", "ws", "wss")
                and urlsplit(r.url).netloc != host else None)
        page.goto(url)
        try:
            page.wait_for_function(READY_JS, arg=sorted(TITLES), timeout=RENDER_TIMEOUT_MS)
        except PlaywrightError as exc:
            problems.append(f"the dashboard did not finish rendering: {exc.message.splitlines()[0]}")
        windows = settled(page)
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    return windows, problems


def test_a_real_run_renders_in_the_browser(visdom_server: Server, tiny_mnist: Path, tmp_path: Path) -> None:
    require_browser()
    spec = tiny_spec(tmp_path, tiny_mnist)
    run = run_cli(str(spec), "--logger", "visdom", "--out", str(tmp_path / "run"),
                  env={"VISDOM_PORT": str(visdom_server.port)})
    assert run.returncode == 0, f"the run failed:\n{run.stdout}\n{run.stderr}"
    assert f"{visdom_server.url}/env/tiny_run" in run.stderr, run.stderr

    shot = ARTIFACTS / "dashboard-tiny.png"
    started = time.monotonic()
    drawn, problems = render(f"{visdom_server.url}/env/tiny_run", shot)
    see = f"(screenshot: {shot}, rendered in {time.monotonic() - started:.1f} s)"

    assert not problems, "\n".join(problems) + f"\n{see}"
    titles = sorted(title for title, _ in drawn)
    assert TITLES <= set(titles) <= TITLES | SOMETIMES, f"window titles {titles}, expected {sorted(TITLES)} {see}"
    windows = dict(drawn)
    assert not overlaps(windows), f"windows cover each other: {overlaps(windows)} {see}"

    loss, test = windows["train loss"], windows["test"]
    assert len(loss["traces"]) == 2 and len(test["traces"]) == 2, (
        f"{len(loss['traces'])} train loss and {len(test['traces'])} test traces drawn, expected 2 and 2 {see}")
    for name, d in [*(("train loss", d) for d in loss["traces"]), *(("test", d) for d in test["traces"])]:
        assert "L" in d, f"a {name} trace has no line segment (path d={d!r}) {see}"
    assert loss["legend"] == ["train loss", "smoothed (0.6)"], f"train loss legend {loss['legend']} {see}"
    assert test["legend"] == ["test loss", "test accuracy"], f"test legend {test['legend']} {see}"
    pane = windows["run"]
    assert pane["box"][1] <= min(w["box"][1] for w in windows.values()), f"the run pane is not on top {see}"
    assert "status\tfinished" in pane["text"] and f"epoch {EPOCHS} of {EPOCHS}" in pane["text"], (
        f"run pane: {pane['text']!r} {see}")
    assert "logging cost" in pane["text"] and "samples/s" in pane["text"], f"run pane: {pane['text']!r} {see}"

    image = windows["test batch"]["image"]
    assert image is not None, f"no <img> in the test batch window {see}"
    # SAMPLES digits of 28 px in one grid: anything smaller is a broken or empty image.
    assert image["complete"] and image["naturalWidth"] >= 28 * min(SAMPLES, 8) \
        and image["naturalHeight"] >= 28, f"the digit grid did not decode: {image} {see}"
    assert image["width"] >= 200 and image["height"] >= 28, f"the digit grid is drawn too small: {image} {see}"

    predictions, spec_text = windows["predictions"], windows["spec"]["text"]
    assert f"epoch {EPOCHS}" in predictions["text"], f"predictions: {predictions['text']!r} {see}"
    assert predictions["cells"] == SAMPLES, f"{predictions['cells']} prediction cells, expected {SAMPLES} {see}"
    assert '"name": "tiny"' in spec_text, f"spec: {spec_text[:300]!r} {see}"
    # Markup or entities showing as text mean the HTML was escaped twice, or not built at all.
    for name, text in (("predictions", predictions["text"]), ("spec", spec_text), ("run", pane["text"])):
        for raw in ("<", ">", "&lt;", "&gt;", "&amp;", "&quot;", "&#"):
            assert raw not in text, f"{name} shows {raw!r} as text: {text[:300]!r} {see}"
