"""The Visdom launcher and its offline assets, against the real server and a real (local) registry.

Server tests start Visdom's server (behind `dashboards.visdom.guard`) through `dashboards.visdom.server`
on free ports; asset tests serve hand-made npm tarballs from a local HTTP registry, so checksum
handling is checked without the network and without touching visdom's own static directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import urljoin, urlsplit

import pytest

from dashboards.visdom import assets
from dashboards.visdom import server as servers
from dashboards.visdom.server import Server

ROOT = Path(__file__).resolve().parents[2]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def launcher(*args: str, env: dict[str, str] | None = None,
             module: str = "dashboards.visdom.server") -> subprocess.CompletedProcess[str]:
    """The command line as `make visdom` runs it, from the project root."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def http_status(url: str) -> int | str:
    try:
        with NO_PROXY.open(url, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return str(exc)


def page_refs(url: str) -> list[str]:
    """Every script src and stylesheet href of the page, as absolute URLs (own parser on purpose)."""
    with NO_PROXY.open(url, timeout=10) as response:
        html = response.read().decode()
    html = re.sub(r"<!--.*?-->", "", html, flags=re.S)
    refs = re.findall(r"<script[^>]*\ssrc=['\"]?([^'\"\s>]+)", html)
    refs += re.findall(r"<link[^>]*\shref=['\"]?([^'\"\s>]+)", html)
    return [urljoin(url, ref) for ref in refs]


def gone(pid: int) -> bool:
    """No such process, or a zombie waiting for its parent (dead for every purpose here)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int, timeout: float = 15) -> bool:
    end = time.monotonic() + timeout
    while not gone(pid) and time.monotonic() < end:
        time.sleep(0.05)
    return gone(pid)


def own_addresses() -> set[str]:
    """This machine's non-loopback IPv4 addresses (those that route anywhere, plus the hostname's)."""
    found: set[str] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:  # connecting a UDP socket sends nothing; it only picks the outgoing address
            s.connect(("192.0.2.1", 9))
            found.add(s.getsockname()[0])
        except OSError:
            pass
    try:
        found.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET))
    except OSError:
        pass
    return {a for a in found if not a.startswith("127.") and a != "0.0.0.0"}


# --- the server -----------------------------------------------------------------------------

def test_serves_page_and_every_asset_offline(tmp_path: Path) -> None:
    assets.ensure()
    static = assets.static_dir()
    watched = [static / t for t in assets.load_manifest().targets()] + [static / assets.BUILT]
    before = {path: path.stat().st_mtime_ns for path in watched}

    with servers.running(home=tmp_path) as server:
        index = f"http://127.0.0.1:{server.port}/"
        refs = page_refs(index)
        statuses = {url: http_status(url) for url in [index, *refs]}
        log = server.log_path.read_text()

    assert len(refs) >= 15  # bootstrap, jquery, react, plotly, mathjax, d3, main.js, styles...
    assert {url: code for url, code in statuses.items() if code != 200} == {}
    assert {urlsplit(url).netloc for url in refs} == {f"127.0.0.1:{server.port}"}  # no CDN in the page
    assert "It's Alive!" in log
    # visdom prints this, and logs "Error ... while downloading" per file, when it goes to the CDNs
    assert "Downloading scripts" not in log and "downloading" not in log.lower()
    assert {path: path.stat().st_mtime_ns for path in watched} == before  # nothing was rewritten


def test_fixture_handle(visdom_server: Server) -> None:
    assert visdom_server.url == f"http://localhost:{visdom_server.port}"
    assert http_status(visdom_server.url) == 200
    assert visdom_server.log_path.exists() and visdom_server.pid_path.read_text().strip() == str(visdom_server.pid)
    assert visdom_server.stop() is True
    assert wait_gone(visdom_server.pid) and not visdom_server.pid_path.exists()
    assert visdom_server.stop() is False


@pytest.fixture
def another_address() -> Iterator[set[str]]:
    """Under `make test` the suite runs in a network namespace with only loopback: give it a second,
    non-loopback address for the test's duration (on lo, so reachable from this namespace alone)."""
    if own_addresses() or not os.environ.get("RUNNER_LOOPBACK_ONLY"):
        yield set()
        return
    subprocess.run(["ip", "addr", "add", "10.254.0.1/32", "dev", "lo"], check=True)
    try:
        yield {"10.254.0.1"}
    finally:
        subprocess.run(["ip", "addr", "del", "10.254.0.1/32", "dev", "lo"], check=False)


def test_listens_on_loopback_only(visdom_server: Server, another_address: set[str]) -> None:
    assert http_status(f"http://127.0.0.1:{visdom_server.port}/") == 200
    addresses = own_addresses() | another_address
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    for address in addresses:
        with pytest.raises(OSError):
            socket.create_connection((address, visdom_server.port), timeout=3).close()


def test_start_twice_says_already_running(visdom_server: Server) -> None:
    home = visdom_server.log_path.parent
    result = launcher("start", "--port", str(visdom_server.port), "--home", str(home))
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout and str(visdom_server.pid) in result.stdout

    with pytest.raises(servers.AlreadyRunning) as caught:
        servers.start(visdom_server.port, home)
    assert caught.value.server.pid == visdom_server.pid

    status = launcher("status", "--port", str(visdom_server.port), "--home", str(home))
    assert status.returncode == 0 and f"pid {visdom_server.pid}" in status.stdout


def test_port_taken_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = launcher("start", "--port", str(port), "--home", str(tmp_path))
    assert result.returncode == 2
    assert f"port {port} is already in use" in result.stderr and "Traceback" not in result.stderr
    assert not servers.pid_path(port, tmp_path).exists()


def test_stop_stops_exactly_that_pid(tmp_path: Path) -> None:
    first = servers.start(servers.free_port(), tmp_path)
    try:
        second = servers.start(servers.free_port(), tmp_path)
        try:
            result = launcher("stop", "--port", str(first.port), "--home", str(tmp_path))
            assert result.returncode == 0 and f"pid {first.pid}" in result.stdout
            assert wait_gone(first.pid) and not first.pid_path.exists()
            assert not gone(second.pid) and http_status(second.url) == 200

            again = launcher("stop", "--port", str(first.port), "--home", str(tmp_path))
            assert again.returncode == 0 and "No Visdom server was running" in again.stdout
            status = launcher("status", "--port", str(first.port), "--home", str(tmp_path))
            assert status.returncode == 3 and "not running" in status.stdout
        finally:
            second.stop()
        assert wait_gone(second.pid)
    finally:
        first.stop()


def test_stop_never_signals_a_pid_that_is_not_its_server(tmp_path: Path) -> None:
    """A stale pid file whose pid now belongs to another program (pid reuse) is just removed."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        port = servers.free_port()
        servers.pid_path(port, tmp_path).write_text(f"{bystander.pid}\n")
        assert servers.status(port, tmp_path) is None
        assert servers.stop(port, tmp_path) is False
        assert bystander.poll() is None and not servers.pid_path(port, tmp_path).exists()
    finally:
        bystander.send_signal(signal.SIGKILL)
        bystander.wait()


def test_stop_then_start_again_on_the_same_port_and_home(tmp_path: Path) -> None:
    port = servers.free_port()
    first = servers.start(port, tmp_path)
    assert servers.stop(port, tmp_path) is True
    assert wait_gone(first.pid)
    second = servers.start(port, tmp_path)
    try:
        assert second.pid != first.pid and second.port == port
        assert http_status(f"http://127.0.0.1:{port}/") == 200
        assert servers.status(port, tmp_path) == second
    finally:
        second.stop()


def test_server_dying_during_start_shows_its_log(tmp_path: Path) -> None:
    # Python runs sitecustomize at start-up: this one makes only the visdom server exit at once.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if 'dashboards.visdom.guard' in sys.orig_argv:\n"
        "    print('visdom cannot start: simulated crash', flush=True)\n"
        "    os._exit(3)\n")
    port = servers.free_port()
    result = launcher("start", "--port", str(port), "--home", str(tmp_path / "home"),
                      env={"PYTHONPATH": str(hooks)})
    assert result.returncode == 1
    assert result.stderr.startswith("error: the Visdom server exited during start")
    assert result.stderr.rstrip().endswith("visdom cannot start: simulated crash")  # its log's tail
    assert not servers.pid_path(port, tmp_path / "home").exists()


def test_running_always_stops_the_server() -> None:
    with pytest.raises(RuntimeError):
        with servers.running() as server:
            home = server.log_path.parent
            raise RuntimeError("a failing test body")
    assert wait_gone(server.pid) and not home.exists()


# --- the assets -----------------------------------------------------------------------------

def test_manifest_covers_every_file_visdom_would_download() -> None:
    """Read the targets out of visdom's own build.py, the way it decides where each file goes."""
    source = (assets.visdom_dir() / "server" / "build.py").read_text()
    table = source[source.index("ext_files = {"):source.index("# make sure all relevant folders")]
    wanted = set()
    for name in re.findall(r':\s*"([^"]+)",', table):
        sub = "js" if name.endswith((".js", ".js.map")) else "css" if name.endswith(".css") else "fonts"
        wanted.add(f"{sub}/{name}")
    mathjax = source[source.index("mathjax_path = ["):]
    wanted |= {f"js/mathjax/2.7.5/{p}" for p in re.findall(r'"([^"?]+)\?', mathjax[:mathjax.index("]")])}
    assert len(wanted) == 29
    targets = set(assets.load_manifest().targets())
    assert wanted <= targets
    # the one extra: the font's plain name, which is what browsers ask for (the '#' name is
    # only what build.py checks for)
    assert targets - wanted == {"fonts/glyphicons-halflings-regular.svg"}
    assert assets.load_manifest().visdom == assets.visdom_version()


def npm_tgz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A local npm registry (plain HTTP over a directory) that runner.fetch is pointed at."""
    root = tmp_path / "registry"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{httpd.server_address[1]}/")
    try:
        yield root
    finally:
        httpd.shutdown()
        httpd.server_close()


def publish(registry: Path, name: str, version: str, tarball: bytes) -> str:
    path = registry / name / "-" / f"{name}-{version}.tgz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tarball)
    return hashlib.sha256(tarball).hexdigest()


def manifest(tmp_path: Path, sha256: str) -> Path:
    path = tmp_path / "assets.json"
    path.write_text(json.dumps({"visdom": assets.visdom_version(), "packages": [{
        "name": "fake-widget", "version": "1.0.0", "sha256": sha256,
        "files": {"js/widget.js": "package/dist/widget.js", "fonts/widget#x": "package/dist/widget.js",
                  "css/widget.css": "package/widget.css"}}]}))
    return path


def test_a_corrupt_cached_tarball_is_refetched(tmp_path: Path, registry: Path) -> None:
    tarball = npm_tgz({"dist/widget.js": b"widget();\n", "widget.css": b".w{}\n"})
    digest = publish(registry, "fake-widget", "1.0.0", tarball)
    cache, static = tmp_path / "cache", tmp_path / "static"
    cached = cache / "npm" / "fake-widget-1.0.0.tgz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the tarball the manifest names")

    assert assets.ensure(static, cache, manifest(tmp_path, digest)) is True
    assert cached.read_bytes() == tarball
    assert (static / "js" / "widget.js").read_bytes() == b"widget();\n"
    assert (static / "fonts" / "widget#x").read_bytes() == b"widget();\n"
    assert (static / "version.built").read_text() == assets.visdom_version()
    assert assets.ensure(static, cache, manifest(tmp_path, digest)) is False  # idempotent

    (static / "css" / "widget.css").unlink()  # a lost file is noticed and put back
    assert assets.ensure(static, cache, manifest(tmp_path, digest)) is True
    assert (static / "css" / "widget.css").exists()


def test_concurrent_installs_take_turns(tmp_path: Path, registry: Path) -> None:
    digest = publish(registry, "fake-widget", "1.0.0",
                     npm_tgz({"dist/widget.js": b"widget();\n", "widget.css": b".w{}\n"}))
    path, cache, static = manifest(tmp_path, digest), tmp_path / "cache", tmp_path / "static"
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(assets.ensure(static, cache, path)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]  # one installed, the others found it done
    assert assets.is_installed(static, path)


def test_a_tarball_that_does_not_match_the_manifest_is_rejected(tmp_path: Path, registry: Path) -> None:
    publish(registry, "fake-widget", "1.0.0", npm_tgz({"dist/widget.js": b"evil();\n", "widget.css": b""}))
    expected = hashlib.sha256(b"the tarball that was reviewed").hexdigest()
    cache, static = tmp_path / "cache", tmp_path / "static"
    with pytest.raises(assets.AssetError, match="sha256"):
        assets.ensure(static, cache, manifest(tmp_path, expected))
    assert not (static / "js" / "widget.js").exists() and not (static / "version.built").exists()
    assert not list((cache / "npm").glob("*.tgz"))  # nothing unverified is kept


def test_unreachable_registry_is_one_clear_line(tmp_path: Path) -> None:
    result = launcher("--static", str(tmp_path / "static"), "--cache", str(tmp_path / "cache"),
                      module="dashboards.visdom.assets",
                      env={"npm_config_registry": f"http://127.0.0.1:{servers.free_port()}/"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: could not download") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, words", [
    (["start", "--port", "99999"], "not a port number from 1 to 65535"),
    (["start", "--port", "0"], "not a port number from 1 to 65535"),
    (["status", "--home", "README.md"], "is a file"),
])
def test_bad_launcher_arguments_are_one_line_and_exit_2(args: list[str], words: str) -> None:
    result = subprocess.run([sys.executable, "-m", "dashboards.visdom.server", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr
