"""The self-contained HTML page a report is: inline plotly.js (from the npm tarball pinned in
dashboards/visdom/assets.json, the one list of pinned web assets), inline style and script, a
Content-Security-Policy that lets nothing be fetched, PNG data URIs for images, and tables whose every
cell is escaped. What goes on the page is the rest of dashboards.report's business; this module only
makes it safe and offline.

`python -c "from dashboards.report.page import plotly_js; plotly_js()"` (`make assets`) fetches
plotly.js into the tarball cache ahead of the offline tests.
"""

from __future__ import annotations

import functools
import html
import json
import struct
import tarfile
import time
import zlib
from pathlib import Path
from typing import Any, Iterable, Sequence

from dashboards.visdom.assets import AssetError, load_manifest
from runner.fetch import FetchError, npm_tarball
from runner.status import FINISHED

PLOTLY, PLOTLY_MEMBER = "plotly.js-dist-min", "package/plotly.min.js"


class ReportError(Exception):
    """The report cannot be made (plotly.js cannot be had); the message says why."""


def png(image: Any) -> tuple[bytes, int, int]:
    """A PNG of one sample, [H][W] grey or [C][H][W] with C 1 (grey) or 3 (colour), values 0-255."""
    if image and isinstance(image[0], list) and image[0] and isinstance(image[0][0], list):  # [C][H][W]
        channels = len(image)
        if channels not in (1, 3):
            raise ValueError(f"{channels} channels; a sample image has 1 or 3")
        planes = image if channels == 3 else image[:1]
    else:
        planes = [image]
    height, width = len(planes[0]), len(planes[0][0]) if planes[0] else 0
    if not height or not width or any(len(p) != height or any(len(r) != width for r in p) for p in planes):
        raise ValueError("images of uneven or empty rows")
    clamp = [max(0, min(255, int(v))) for p in planes for r in p for v in r]
    area = height * width
    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter: none
        if len(planes) == 1:
            raw += bytes(clamp[y * width:(y + 1) * width])
        else:  # interleave the planes: RGBRGB...
            for x in range(width):
                raw += bytes(clamp[c * area + y * width + x] for c in range(3))

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2 if len(planes) == 3 else 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) \
        + chunk(b"IEND", b"")
    return data, width, height


def cell(value: Any) -> str:
    """A value as text, exactly: floats in full (repr), containers as compact JSON."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return "" if value is None else str(value)


def table_html(header: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def summary_html(summary: dict[str, Any] | None) -> str:
    """Whatever the summary holds: scalars as a two-column table, lists of records as their own tables."""
    if summary is None:
        return "<p class=note>No summary: the run did not finish.</p>"
    scalars = [(k, v) for k, v in summary.items() if not _records(v)]
    parts = [table_html(["key", "value"], scalars, "kv")]
    for key, value in summary.items():
        if _records(value):
            columns = list(dict.fromkeys(k for record in value for k in record))
            parts.append(f"<h3>{html.escape(str(key))}</h3>"
                         + table_html(columns, ([r.get(c) for c in columns] for r in value)))
    return "".join(parts)


def _records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.min.js out of the tarball pinned in assets.json (fetched into the cache once, sha256 checked)."""
    try:
        package = next(p for p in load_manifest().packages if p.name == PLOTLY)
        tarball = npm_tarball(package.name, package.version, package.sha256)
        with tarfile.open(tarball) as tar:
            member = tar.extractfile(PLOTLY_MEMBER)
            if member is None:
                raise ReportError(f"{tarball.name} has no {PLOTLY_MEMBER}")
            js = member.read().decode("utf-8")
    except StopIteration:
        raise ReportError(f"the asset manifest pins no {PLOTLY}; reports inline it from there.") from None
    except (AssetError, FetchError, tarfile.TarError, OSError) as exc:
        raise ReportError(f"plotly.js cannot be had: {exc}") from None
    return js.replace("</script", "<\\/script")  # cannot end the inline script early


def json_for_script(value: Any) -> str:
    # Inside <script>, "<" could start "</script>"; JSON lets it be written as \u003c.
    return json.dumps(value, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c").replace(
        ">", "\\u003e").replace("&", "\\u0026")


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1280px;
 padding:0 20px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 6px}.description{font-size:15px;margin:4px 0 8px;white-space:pre-wrap}
.meta{color:#555}.note{color:#8a5a00}.status{display:inline-block;padding:1px 8px;border-radius:10px;
 background:#e6f4ea;color:#137333;font-weight:600}.status.problem{background:#fce8e6;color:#a50e0e}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:12px}
.chart{border:1px solid #e3e3e3;border-radius:4px;min-height:340px}
table{border-collapse:collapse;margin:6px 0}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right;
 font-variant-numeric:tabular-nums;vertical-align:top}th{background:#f6f6f6}td:first-child,th:first-child{text-align:left}
table.kv td,.text{text-align:left}table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
.samples{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;text-align:center;font-size:12px;width:96px}
figure img{image-rendering:pixelated;border:1px solid #ccc;display:block;margin:0 auto 2px}
.mistakes figure{width:120px}figcaption.ok{color:#137333}figcaption.bad{color:#a50e0e;font-weight:600}.truth{font-weight:400;color:#555}
pre{background:#f6f8fa;padding:10px;overflow:auto;max-height:480px;font-size:12px}
footer{margin-top:32px;color:#777;font-size:12px}
"""

SCRIPT = """
(function () {
  var figures = JSON.parse(document.getElementById('figures').textContent);
  figures.forEach(function (f) {
    Plotly.newPlot(document.getElementById(f.id), f.data, f.layout, {displaylogo: false, responsive: true});
  });
  function key(cell) {
    var v = cell.getAttribute('data-v');
    if (v === null) v = cell.textContent;
    var n = parseFloat(v);
    return v === '' ? null : (isNaN(n) ? v.toLowerCase() : n);
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    heads.forEach(function (th, i) {
      th.title = 'sort by ' + th.textContent;
      th.addEventListener('click', function () {
        var up = th.getAttribute('aria-sort') !== 'ascending';
        heads.forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[i]), y = key(b.cells[i]);
          if (x === null || y === null) return (x === null) - (y === null);  // empty cells last
          if (typeof x !== typeof y) { x = String(x); y = String(y); }
          return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""


def page(title: str, header: str, sections: Sequence[tuple[str, str]], figures: list[dict[str, Any]],
         source: Path) -> str:
    """The whole HTML document; `header` and section bodies are HTML already escaped by their makers."""
    body = "".join(f'<section id="{html.escape(sid)}"><h2>{html.escape(name)}</h2>{content}</section>'
                   for sid, name, content in ((n.lower().replace(" ", "-"), n, c) for n, c in sections if c))
    made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            # Nothing may be fetched: scripts and styles are inline, images are data URIs. Plotly's
            # parallel coordinates compile their WebGL code at run time ('unsafe-eval'); nothing
            # outside the page can be reached either way.
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            f"script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; "
            f"font-src data:\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{header}{body}"
            f"<footer>Made by <code>python -m runner report</code> on {made} from the files in "
            f"<code>{html.escape(str(source))}</code>. Self-contained: plotly.js {html.escape(plotly_version())} "
            f"is inlined; nothing is loaded from the network.</footer>"
            f'<script type="application/json" id="figures">{json_for_script(figures)}</script>'
            f"<script>{plotly_js()}</script><script>{SCRIPT}</script></body></html>\n")


def plotly_version() -> str:
    return next((p.version for p in load_manifest().packages if p.name == PLOTLY), "?")


def chart_grid(figures: list[dict[str, Any]]) -> str:
    """Where the figures go: one empty box per figure, filled by the page's script."""
    return '<div class=charts>' + "".join(f'<div class=chart id="{f["id"]}"></div>' for f in figures) + "</div>"


def header(name: str, description: str, status: str, meta: Sequence[str], notes: Sequence[str]) -> str:
    problem = "" if status == FINISHED else " problem"
    return (f"<header><h1>{html.escape(name)} <span class=\"status{problem}\">{html.escape(status)}</span></h1>"
            + (f'<p class=description id=description>{html.escape(description)}</p>' if description else "")
            + f"<p class=meta>{' &middot; '.join(html.escape(m) for m in meta if m)}</p>"
            + "".join(f"<p class=note>{html.escape(n)}</p>" for n in notes) + "</header>")
