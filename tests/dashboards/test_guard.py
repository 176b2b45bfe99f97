"""The dashboard answers only this machine's pages (docs/SECURITY.md), on real servers and a real browser.

The guard (dashboards.visdom.guard): a Host that is not a loopback name and an Origin that is not the
server's own are refused, for HTTP and websockets alike, before any Visdom handler runs. The login
`start` makes and stores (mode 0600), which runs find by themselves and a browser opens with a link.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import requests
import websocket

from chromium import page as chromium_page
from dashboard_helpers import windows
from dashboards.visdom import server as servers
from dashboards.visdom.process import runtime_dir, runtime_path
from dashboards.visdom.server import Server
from helpers import ROOT, run_cli, tiny_spec

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

FOREIGN = "attacker.example"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with the login `make visdom` uses (stored in its home) for the tests of this module."""
    with servers.running(home=tmp_path_factory.mktemp("visdom"), credentials=servers.STORED) as server:
        yield server


def session(server: Server) -> requests.Session:
    """A client logged in with the server's stored login, as a run logs in."""
    credentials = servers.local_credentials("localhost", server.port)
    assert credentials is not None
    client = requests.Session()
    assert client.post(f"http://127.0.0.1:{server.port}/", data=credentials.login_body(), timeout=10).status_code == 200
    return client


def text_env(client: requests.Session, port: int, env: str) -> None:
    """An env holding one text window, saved to the server's envs/ folder."""
    base = f"http://127.0.0.1:{port}"
    window = {"eid": env, "win": "note", "data": [{"content": "kept", "type": "text"}], "opts": {}}
    assert client.post(f"{base}/events", data=json.dumps(window), timeout=10).status_code == 200
    assert client.post(f"{base}/save", data=json.dumps({"data": [env]}), timeout=10).status_code == 200


def has_env(client: requests.Session, port: int, env: str) -> bool:
    # Visdom answers 500 for the windows of an env it does not have.
    code = client.post(f"http://127.0.0.1:{port}/win_data", data=json.dumps({"eid": env, "win": None}),
                       timeout=10).status_code
    assert code in (200, 500)
    return code == 200


@contextmanager
def page_server(html: str) -> Iterator[int]:
    """A second tiny HTTP server on 127.0.0.1 serving `html` at every path; yields its port."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


# What a page on any site can send without a preflight: POSTs with a text/plain body. The browser
# adds the dashboard's cookie: both pages are on localhost, the same site for SameSite.
ATTACK = """<!doctype html><title>waiting</title><script>
const base = "http://localhost:PORT";
const post = (path, body) => fetch(base + path, {method: "POST", mode: "no-cors", credentials: "include",
                                                 headers: {"Content-Type": "text/plain"}, body: JSON.stringify(body)});
Promise.allSettled([post("/env/planted", {eid: "planted"}), post("/delete_env", {eid: "victim"}),
                    post("/events", {eid: "victim", win: "note", data: [{content: "changed", type: "text"}], opts: {}})])
  .then(() => { document.title = "sent"; });
</script>"""


def test_a_page_on_another_local_origin_changes_nothing(guarded: Server) -> None:
    client = session(guarded)
    text_env(client, guarded.port, "victim")
    saved = guarded.home / "envs" / "victim.json"
    assert saved.exists()
    link = servers.login_link(guarded)
    assert link is not None

    answers: dict[str, int] = {}
    with page_server(ATTACK.replace("PORT", str(guarded.port))) as other, chromium_page() as page:
        page.goto(link)  # the person opened the dashboard: the browser holds its login cookie
        page.wait_for_selector(".rc-tree-select", timeout=30_000)
        page.on("response", lambda r: answers.__setitem__(r.url, r.status)
                if f":{guarded.port}/" in r.url else None)
        page.goto(f"http://localhost:{other}/")
        page.wait_for_function("document.title === 'sent'", timeout=30_000)

    assert answers == {f"http://localhost:{guarded.port}/{path}": 403 for path in ("env/planted", "delete_env", "events")}
    assert saved.exists() and has_env(client, guarded.port, "victim") and not has_env(client, guarded.port, "planted")
    note = client.post(f"http://127.0.0.1:{guarded.port}/win_data", data=json.dumps({"eid": "victim", "win": None}),
                       timeout=10)
    assert note.json()["note"]["content"] == "kept"


def test_a_foreign_host_is_refused_for_http_and_websockets(guarded: Server) -> None:
    client = session(guarded)
    base, port = f"http://127.0.0.1:{guarded.port}", guarded.port
    cookie = "; ".join(f"{c.name}={c.value}" for c in client.cookies)
    foreign = {"Host": f"{FOREIGN}:{port}"}
    body = json.dumps({"eid": "rebound"})
    # What a page whose own name was rebound to 127.0.0.1 sends: its own name as Host.
    for method, path in (("GET", "/"), ("GET", "/env/main"), ("GET", "/static/js/main.js"),
                         ("POST", "/env/rebound"), ("POST", "/win_data")):
        refused = client.request(method, base + path, data=body, headers=foreign, timeout=10)
        assert (refused.status_code, refused.text) == (403, f"refused: Host '{FOREIGN}:{port}' is not this machine: "
                                                            "the dashboard answers localhost, 127.0.0.1 and [::1] only\n")
    assert not has_env(client, port, "rebound")
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", "localhost:9"):
        assert client.get(base + "/", headers={"Host": host}, timeout=10).status_code == 200, host
    for host in (f"localhost.{FOREIGN}:{port}", f"127.0.0.1.nip.io:{port}", "localhost:x", ""):
        assert client.get(base + "/", headers={"Host": host}, timeout=10).status_code in (400, 403), host
    # Cross-origin from another local port, with the login cookie: refused; the page's own origin passes.
    own = {"Origin": f"http://127.0.0.1:{port}"}
    assert client.post(base + "/env/crossed", data=body, headers={"Origin": "http://127.0.0.1:9"},
                       timeout=10).status_code == 403
    assert client.post(base + "/env/crossed", data=body, headers={"Origin": "null"}, timeout=10).status_code == 403
    assert client.post(base + "/env/own", data=json.dumps({"eid": "own"}), headers=own, timeout=10).status_code == 200
    assert has_env(client, port, "own") and not has_env(client, port, "crossed")

    url = f"ws://127.0.0.1:{port}/socket"
    for options in ({"host": f"{FOREIGN}:{port}"}, {"origin": f"http://{FOREIGN}"},
                    {"origin": "http://127.0.0.1:9"}, {"host": f"{FOREIGN}:{port}", "origin": f"http://{FOREIGN}:{port}"}):
        with pytest.raises(websocket.WebSocketBadStatusException) as caught:
            websocket.create_connection(url, timeout=10, cookie=cookie, **options)
        assert caught.value.status_code == 403, options
    for path in ("/socket", "/vis_socket"):  # the dashboard's own page, logged in: the socket opens
        ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=10, cookie=cookie,
                                         origin=f"http://127.0.0.1:{port}")
        try:
            assert json.loads(ws.recv())["command"] in ("register", "alive")
        finally:
            ws.close()


def test_the_token_link_logs_a_browser_in(guarded: Server) -> None:
    link = servers.login_link(guarded)
    assert link is not None and link.startswith(f"{guarded.url}/?token=")
    with chromium_page() as page:
        page.goto(f"{guarded.url}/env/main")  # no login yet: Visdom's login page, not a blank 400
        assert page.title() == "Visdom Login" and page.url == f"{guarded.url}/"
        wrong = page.goto(f"{guarded.url}/?token=not-the-token")
        assert wrong is not None and wrong.status == 403
        page.goto(link.replace("/?", "/env/main?"))
        assert page.url == f"{guarded.url}/env/main"  # the token is out of the address bar
        page.wait_for_selector(".rc-tree-select", timeout=30_000)  # the dashboard itself
        (cookie,) = page.context.cookies()
        assert cookie["name"] == "user_password" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    token = link.split("?token=", 1)[1]
    for path in ("//evil.example/", "/\\evil.example/"):  # sent as is: never a redirect off the server
        connection = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=10)
        connection.request("GET", f"{path}?token={token}")
        answer = connection.getresponse()
        where = answer.getheader("Location", "")
        connection.close()
        assert answer.status == 302 and where.startswith("/") and not where.startswith(("//", "/\\")), (path, where)


def test_only_the_right_token_logs_in_over_plain_http(guarded: Server) -> None:
    """The token check without a browser: a wrong, empty, shortened or lengthened token gets 403 and no
    cookie, and with no cookie the dashboard's pages send to the login; the right one sets the cookie
    that then opens them."""
    token = servers.login_link(guarded).split("?token=", 1)[1]

    def get(path: str, cookie: str = "") -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=10)
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        answer = connection.getresponse()
        answer.read()
        connection.close()
        return answer

    for wrong in ("not-the-token", "", token[:-1], token + "0", token.upper() if token != token.upper() else "x"):
        answer = get(f"/env/main?token={wrong}")
        assert answer.status == 403 and answer.getheader("Set-Cookie") is None, wrong
    assert get("/env/main").status == 302 and get("/env/main").getheader("Location") == "/"
    right = get(f"/env/main?token={token}")
    assert right.status == 302 and right.getheader("Location") == "/env/main"
    cookie = right.getheader("Set-Cookie", "").split(";", 1)[0]
    assert cookie.startswith("user_password=")
    assert get("/env/main", cookie).status == 200


def test_start_stores_a_login_0600_that_runs_use(tmp_path: Path, tiny_mnist: Path) -> None:
    home, port = tmp_path / "visdom", servers.free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("VISDOM_USERNAME", "VISDOM_PASSWORD", "VISDOM_BIND")}
    launch = partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
                     preexec_fn=lambda: os.umask(0))  # modes must not depend on the umask
    started = launch([sys.executable, "-m", "dashboards.visdom.server", "start", "--port", str(port),
                      "--home", str(home)])
    try:
        assert started.returncode == 0, started.stderr
        assert "listening on 127.0.0.1 only, login required" in started.stdout
        stored = json.loads(servers.login_path(home).read_text())
        assert servers.login_path(home).stat().st_mode & 0o777 == 0o600
        assert stored["username"] and len(stored["password"]) >= 32
        link = f"http://localhost:{port}/?token={stored['password']}"
        assert link in started.stdout
        record = runtime_path(port)
        assert record.stat().st_mode & 0o777 == 0o600 and record.parent.stat().st_mode & 0o777 == 0o700
        status = launch([sys.executable, "-m", "dashboards.visdom.server", "status", "--port", str(port),
                         "--home", str(home)])
        assert status.returncode == 0 and link in status.stdout
        base = f"http://127.0.0.1:{port}"
        assert requests.post(f"{base}/env/x", data=json.dumps({"eid": "x"}), timeout=10).status_code == 400

        run = run_cli(str(tiny_spec(tmp_path, tiny_mnist, train={"epochs": 1})), "--logger", "visdom",
                      "--out", str(tmp_path / "run"), env={"VISDOM_PORT": str(port)})
        assert run.returncode == 0, run.stderr
        assert f"live dashboard at http://localhost:{port}/env/tiny_run" in run.stderr
        assert stored["password"] not in run.stderr + run.stdout
        assert len(windows(port, "tiny_run")["train_loss"]["content"]["data"][0]["x"]) == 12
        # prune finds the login too: the env leaves the server, not only its file
        pruned = launch([sys.executable, "-m", "dashboards.visdom.server", "prune", "--older-than", "0",
                         "--port", str(port), "--home", str(home)])
        assert pruned.returncode == 0 and "tiny_run" in pruned.stdout, pruned.stderr
        code, opener = servers.login(port, servers.Credentials(stored["username"], stored["password"]))
        asked = json.dumps({"eid": "tiny_run", "win": None}).encode()
        assert code == 200 and servers.fetch(f"{base}/win_data", opener=opener, data=asked)[0] == 500
    finally:
        launch([sys.executable, "-m", "dashboards.visdom.server", "stop", "--port", str(port), "--home", str(home)])
    assert not runtime_path(port).exists()  # stopped: its record is gone


def test_no_login_is_an_explicit_choice(tmp_path: Path) -> None:
    port = servers.free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("VISDOM_USERNAME", "VISDOM_PASSWORD", "VISDOM_BIND")}
    launch = partial(subprocess.run, cwd=ROOT, capture_output=True, text=True, timeout=120)
    start = [sys.executable, "-m", "dashboards.visdom.server", "start", "--port", str(port), "--home", str(tmp_path),
             "--no-login"]
    contradiction = launch(start, env={**env, "VISDOM_USERNAME": "a", "VISDOM_PASSWORD": "b"})
    assert contradiction.returncode == 1 and "--no-login and VISDOM_USERNAME" in contradiction.stderr
    started = launch(start, env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert "listening on 127.0.0.1 only, no login" in started.stdout and "?token=" not in started.stdout
        assert "--no-login: every program and user of this machine" in started.stderr
        assert not servers.login_path(tmp_path).exists()
        base = f"http://127.0.0.1:{port}"
        assert requests.post(f"{base}/env/open", data=json.dumps({"eid": "open"}), timeout=10).status_code == 200
        # The guard stays: another site's page is still refused.
        assert requests.post(f"{base}/env/x", data="{}", headers={"Origin": f"http://{FOREIGN}"},
                             timeout=10).status_code == 403
    finally:
        launch([sys.executable, "-m", "dashboards.visdom.server", "stop", "--port", str(port), "--home",
                str(tmp_path)], env=env)


def test_a_run_finds_only_a_live_local_servers_login(tmp_path: Path, guarded: Server) -> None:
    stored = servers.local_credentials("http://localhost", guarded.port)
    assert stored == servers.local_credentials("127.0.0.1", guarded.port) is not None
    assert servers.local_credentials("http://training-host.example", guarded.port) is None  # not this machine
    record = json.loads(runtime_path(guarded.port).read_text())
    assert record == {"port": guarded.port, "pid": guarded.pid, "home": str(guarded.home),
                      "login": str(servers.login_path(guarded.home))}
    # A record left by a server that is gone (its pid is no visdom server): no login is sent anywhere.
    port = servers.free_port()
    runtime_path(port).write_text(json.dumps({**record, "port": port, "pid": os.getpid()}))
    assert servers.local_credentials("localhost", port) is None


def test_the_runtime_folder_is_the_users_own() -> None:
    assert runtime_dir({"VISDOM_RUNTIME_DIR": "/r"}) == Path("/r")
    assert runtime_dir({"XDG_DATA_HOME": "/d", "XDG_RUNTIME_DIR": "/run/user/1"}) == Path("/d/mnist-runner/runtime")
    assert runtime_dir({}) == Path("~/.local/share/mnist-runner/runtime").expanduser()
