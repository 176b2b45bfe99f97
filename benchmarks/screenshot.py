"""Screenshot of a real run's dashboard: writes docs/dashboard.png.

Starts a private Visdom server (free port, temporary home) with the login `make visdom` uses, runs an
experiment on real MNIST with the Visdom logger exactly as a user would (it finds the login by itself),
opens the login link and then the run's env in headless Chromium, waits until every window is drawn
and the grid has stopped moving, saves a full-page screenshot, stops the server.

Usage: python benchmarks/screenshot.py [--spec experiments/relu.json] [--set KEY=VALUE ...]
                                       [--output docs/dashboard.png] [--width 1400] [--height 1000]
Needs real MNIST in data/ (`make data`), playwright, and Chromium (CHROMIUM, default /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # headless Chromium, as the browser tests drive it

from chromium import CHROMIUM, page as chromium_page  # noqa: E402
from dashboards.visdom import server  # noqa: E402

WINDOWS = 7  # run, train loss, test, learning rate, test batch, predictions, spec

# Window titles and boxes; ready once every window is there, the plots have lines, the image decoded.
WINDOWS_JS = """() => Array.from(document.querySelectorAll('.react-grid-item'), item => {
  const r = item.getBoundingClientRect();
  const title = item.querySelector('.bar > div.pull-right');
  return [title ? title.textContent.trim() : '?', Math.round(r.left), Math.round(r.top),
          Math.round(r.width), Math.round(r.height)];
})"""
READY_JS = """(n) => {
  const img = document.querySelector('.window img');
  return document.querySelectorAll('.react-grid-item').length >= n
      && document.querySelectorAll('.scatterlayer .trace path.js-line').length >= 3
      && img !== null && img.complete && img.naturalWidth > 0;
}"""


def run_experiment(spec: Path, overrides: list[str], port: int, out: Path) -> None:
    command = [sys.executable, "-m", "runner", str(spec), "--logger", "visdom", "--out", str(out)]
    for item in overrides:
        command += ["--set", item]
    print(f"$ VISDOM_PORT={port} python {' '.join(command[1:])}", flush=True)
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "VISDOM_PORT": str(port)})
    if done.returncode != 0:
        sys.exit(f"the run failed (exit {done.returncode})")


def screenshot(link: str, url: str, output: Path, width: int, height: int, timeout_s: float = 30) -> list[Any]:
    """Full-page screenshot of `url`, once logged in through `link`, when all windows are drawn and
    still; returns the windows."""
    with chromium_page({"width": width, "height": height}) as page:
        page.goto(link)
        page.goto(url)
        page.wait_for_function(READY_JS, arg=WINDOWS, timeout=timeout_s * 1000)
        # The grid animates windows into place; a screenshot mid-move shows them overlapping.
        windows, since = page.evaluate(WINDOWS_JS), time.monotonic()
        while time.monotonic() - since < 0.5:
            time.sleep(0.1)
            now = page.evaluate(WINDOWS_JS)
            if now != windows:
                windows, since = now, time.monotonic()
        output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(output), full_page=True)
    return windows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=ROOT / "experiments" / "relu.json")
    parser.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                        help="spec override passed to the runner (default: train.epochs=3)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        sys.exit(f"Chromium is not at {CHROMIUM}: install it (apt-get install chromium) or set CHROMIUM")

    with tempfile.TemporaryDirectory(prefix="dashboard-shot-") as tmp, \
            server.running(home=Path(tmp) / "visdom", credentials=server.STORED) as visdom:
        print(f"Visdom at {visdom.url} (pid {visdom.pid})", flush=True)
        name = json.loads(args.spec.read_text())["name"]
        out = Path(tmp) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"  # named as runs/ names it: so is the env
        run_experiment(args.spec, args.overrides or ["train.epochs=3"], visdom.port, out)
        env = json.loads((out / "summary.json").read_text())["visdom_env"]
        link = server.login_link(visdom)
        assert link is not None, "the server has no stored login"
        windows = screenshot(link, f"{visdom.url}/env/{quote(env)}", args.output, args.width, args.height)
    for title, x, y, w, h in windows:
        print(f"  window {title!r:14} at ({x}, {y}) size {w}x{h}")
    if len(windows) != WINDOWS:
        print(f"warning: {len(windows)} windows, expected {WINDOWS}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
