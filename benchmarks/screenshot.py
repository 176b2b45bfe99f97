"""Screenshot of a real run's dashboard: writes docs/dashboard.png.

Starts a private Visdom server (free port, temporary home) with the login `make visdom` uses, runs an
experiment on real MNIST with the Visdom logger exactly as a user would (it finds the login by itself),
opens the login link and then the run's env in headless Chromium, waits until every window is drawn
and the grid has stopped moving, saves a full-page screenshot, stops the server.

With `--script PATH` it runs a loop of one's own instead (a Python script using `runner.track`, given
`--script-arg`s), in a temporary folder so its run directory lands under runs/ there, and shows that
run's env; it then says how many points each line window holds and up to which step, against the
values of the run's journal.

Usage: python benchmarks/screenshot.py [--spec experiments/relu.json] [--set KEY=VALUE ...]
                                       [--output docs/dashboard.png] [--width 1400] [--height 1000]
       python benchmarks/screenshot.py --script examples/autoencoder.py --script-arg=--steps=20000 \
                                       --output docs/tracked.png
Needs real MNIST in data/ (`make data`), playwright, and Chromium (CHROMIUM, default /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

WINDOWS = 7  # at least: run, train loss, test, learning rate, test batch, predictions, spec (insight adds more)

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


def run_script(script: Path, arguments: list[str], port: int, folder: Path) -> Path:
    """Run a loop of one's own in `folder` (its runs/ lands there) as a user would; returns its run directory."""
    command = [sys.executable, str(script.resolve()), *arguments]
    print(f"$ VISDOM_PORT={port} python {' '.join(command[1:])}", flush=True)
    env = {**os.environ, "VISDOM_PORT": str(port), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]).rstrip(os.pathsep)}
    done = subprocess.run(command, cwd=folder, env=env)
    if done.returncode != 0:
        sys.exit(f"the script failed (exit {done.returncode})")
    found = sorted(folder.glob("runs/*/summary.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit(f"the script left no run directory under {folder / 'runs'}")
    return found[-1].parent


def line_windows(port: int, env: str) -> dict[str, Any]:
    """What the server holds of the env, read as a browser reads it (logged in with the stored login)."""
    from visdom import Visdom

    from dashboards.visdom.access import local_credentials

    stored = local_credentials("localhost", port)
    login = {"username": stored.username, "password": stored.password} if stored else {}
    viz = Visdom(server="http://localhost", port=port, use_incoming_socket=False, raise_exceptions=True, **login)
    return json.loads(viz.get_window_data(env=env))


def tracked_figures(held: dict[str, Any], run_dir: Path) -> None:
    """Each line window's traces (points drawn, last step) against the journal's values of each name."""
    from runner.loggers import NullLogger, replay

    journal = NullLogger()
    events = replay(run_dir / "metrics.jsonl", journal)
    logged: dict[str, list[int]] = {}
    for call in journal.named("metrics"):
        for name in call["values"]:
            logged.setdefault(name, []).append(call["step"])
    print(f"journal: {events:,} events, {sum(map(len, logged.values())):,} values")
    for name, steps in sorted(logged.items()):
        print(f"  {name}: {len(steps):,} values, steps {steps[0]:,} to {steps[-1]:,}")
    for win, window in held.items():
        if window.get("type") == "plot":
            for trace in window["content"]["data"]:
                print(f"  window {win}, trace {trace['name']!r}: {len(trace['x']):,} points, last step "
                      f"{trace['x'][-1]:,}")


def screenshot(link: str, url: str, output: Path, width: int, height: int, timeout_s: float = 30,
               windows: int = WINDOWS) -> list[Any]:
    """Full-page screenshot of `url`, once logged in through `link`, when all windows are drawn and
    still; returns the windows."""
    with chromium_page({"width": width, "height": height}) as page:
        page.goto(link)
        page.goto(url)
        page.wait_for_function(READY_JS, arg=windows, timeout=timeout_s * 1000)
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
    parser.add_argument("--script", type=Path, help="a Python script of one's own loop (runner.track) to run "
                                                    "instead of a spec")
    parser.add_argument("--script-arg", dest="script_args", action="append", default=[], metavar="ARG",
                        help="an argument for the script (repeat; write --script-arg=--steps=20000)")
    parser.add_argument("--keep", type=Path, help="copy the script's run directory there (for `report`)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        sys.exit(f"Chromium is not at {CHROMIUM}: install it (apt-get install chromium) or set CHROMIUM")
    if args.script is not None:
        return shoot_script(args)

    with tempfile.TemporaryDirectory(prefix="dashboard-shot-") as tmp, \
            server.running(home=Path(tmp) / "visdom", credentials=server.STORED) as visdom:
        print(f"Visdom at {visdom.url} (pid {visdom.pid})", flush=True)
        name = json.loads(args.spec.read_text())["name"]
        out = Path(tmp) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"  # named as runs/ names it: so is the env
        run_experiment(args.spec, args.overrides or ["train.epochs=3"], visdom.port, out)
        if (out / "summary.json").is_file():
            env = json.loads((out / "summary.json").read_text())["visdom_env"]
        else:  # a sweep: its comparison env
            env = json.loads((out / "sweep.json").read_text())["env"]
        link = server.login_link(visdom)
        assert link is not None, "the server has no stored login"
        windows = screenshot(link, f"{visdom.url}/env/{quote(env)}", args.output, args.width, args.height)
    for title, x, y, w, h in windows:
        print(f"  window {title!r:14} at ({x}, {y}) size {w}x{h}")
    if len(windows) < WINDOWS:
        print(f"warning: {len(windows)} windows, expected at least {WINDOWS}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


def shoot_script(args: argparse.Namespace) -> int:
    """The screenshot of a tracked run's env, and how its windows hold its journal's values."""
    with tempfile.TemporaryDirectory(prefix="tracked-shot-") as tmp, \
            server.running(home=Path(tmp) / "visdom", credentials=server.STORED) as visdom:
        print(f"Visdom at {visdom.url} (pid {visdom.pid})", flush=True)
        run_dir = run_script(args.script, args.script_args, visdom.port, Path(tmp))
        env = json.loads((run_dir / "summary.json").read_text())["visdom_env"]
        held = line_windows(visdom.port, env)
        link = server.login_link(visdom)
        assert link is not None, "the server has no stored login"
        shown = screenshot(link, f"{visdom.url}/env/{quote(env)}", args.output, args.width, args.height,
                           windows=len(held))
        tracked_figures(held, run_dir)
        if args.keep is not None:
            shutil.copytree(run_dir, args.keep)
            print(f"run directory kept as {args.keep}")
    for title, x, y, w, h in shown:
        print(f"  window {title!r:28} at ({x}, {y}) size {w}x{h}")
    print(f"wrote {args.output}")
    return 0 if len(shown) == len(held) else 1


if __name__ == "__main__":
    sys.exit(main())
