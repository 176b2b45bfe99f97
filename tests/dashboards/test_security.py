"""The dashboard's protections (docs/SECURITY.md), against the real server where there is one.

Binding: 127.0.0.1 unless asked. Login: from VISDOM_USERNAME / VISDOM_PASSWORD, for the launcher and
the logger, surviving a restart (the login the launcher makes and stores by default, and the guard
against other sites' pages: test_guard.py). What the logger sends: escaped text, safe env names, bounded images.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from dashboards.visdom import server as servers
from dashboards.visdom.server import Credentials
from dashboard_helpers import delivered, wait_until, windows
from dashboards.visdom.logger import MAX_ENV_CHARS, MAX_IMAGES, MAX_TEXT_CHARS, VisdomLogger, safe_env
from helpers import tiny_spec

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[2]
ALICE = Credentials("alice", "correct horse battery staple")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # what the spec accepts as a name
MARKUP = "<img src=x onerror=alert(1)><script>alert('x')</script>"
TAGS_WE_WRITE = {"pre", "b", "table", "tr", "td", "code"}


def launcher(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m dashboards.visdom.server ARGS` as `make visdom` runs it, without any inherited login."""
    base = {k: v for k, v in os.environ.items() if k not in ("VISDOM_USERNAME", "VISDOM_PASSWORD", "VISDOM_BIND")}
    return subprocess.run([sys.executable, "-m", "dashboards.visdom.server", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**base, **(env or {})})


def digits(n: int, side: int = 28) -> list[list[list[list[int]]]]:
    return [[[[(k * 37 + r * c) % 256 for c in range(side)] for r in range(side)]] for k in range(n)]


def png_size(src: str) -> tuple[int, int]:
    png = base64.b64decode(src.removeprefix("data:image/png;base64,"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])  # IHDR: width, height


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


# --- binding ---------------------------------------------------------------------------------

def test_binding_comes_only_from_an_explicit_request() -> None:
    assert servers.public_from_env({}) is False
    assert servers.public_from_env({"VISDOM_BIND": "local"}) is False
    assert servers.public_from_env({"VISDOM_BIND": "all"}) is True
    with pytest.raises(servers.ServerError, match="VISDOM_BIND"):
        servers.public_from_env({"VISDOM_BIND": "yes please"})
    result = launcher("start", "--port", str(servers.free_port()), "--home", "/nonexistent",
                      env={"VISDOM_BIND": "everywhere"})
    assert result.returncode == 1 and "VISDOM_BIND='everywhere'" in result.stderr


def test_public_is_opt_in_and_warns(tmp_path: Path) -> None:
    port = servers.free_port()
    result = launcher("start", "--port", str(port), "--home", str(tmp_path), "--public")
    try:
        assert result.returncode == 0, result.stderr
        assert "every network interface" in result.stderr and "login travels over plain HTTP" in result.stderr
        assert f"ssh -L {port}:localhost:{port}" in result.stderr
        assert "listening on EVERY network interface, login required" in result.stdout and "?token=" in result.stdout
        argv = Path(f"/proc/{servers.status(port, tmp_path).pid}/cmdline").read_bytes().split(b"\0")
        assert b"-bind_local" not in argv
        # Remote users name the machine as they reach it: any Host is answered (with the login page);
        # another site's page is still refused, and the API still wants the login.
        base = f"http://127.0.0.1:{port}"
        page = requests.get(base, headers={"Host": f"training-host.example:{port}"}, timeout=10)
        assert page.status_code == 200 and "Visdom Login" in page.text
        assert requests.post(f"{base}/env/x", data="{}", headers={"Origin": "http://attacker.example"},
                             timeout=10).status_code == 403
        assert requests.post(f"{base}/env/x", data="{}", timeout=10).status_code == 400
    finally:
        launcher("stop", "--port", str(port), "--home", str(tmp_path))
    result = launcher("start", "--port", str(port), "--home", str(tmp_path), "--public", "--no-login")
    try:
        assert result.returncode == 0, result.stderr
        assert "there is no login (--no-login)" in result.stderr
        assert "listening on EVERY network interface, no login" in result.stdout
    finally:
        launcher("stop", "--port", str(port), "--home", str(tmp_path))


# --- login -----------------------------------------------------------------------------------

def test_credentials_from_the_environment() -> None:
    assert servers.credentials_from_env({}) is None
    assert servers.credentials_from_env({"VISDOM_USERNAME": "a", "VISDOM_PASSWORD": "b"}) == Credentials("a", "b")
    with pytest.raises(servers.ServerError, match="VISDOM_PASSWORD is not set"):
        servers.credentials_from_env({"VISDOM_USERNAME": "a"})
    assert "correct horse" not in repr(ALICE)


def test_make_visdom_with_credentials_starts_a_login_server(tmp_path: Path) -> None:
    port = servers.free_port()
    env = {"VISDOM_USERNAME": ALICE.username, "VISDOM_PASSWORD": ALICE.password}
    result = launcher("start", "--port", str(port), "--home", str(tmp_path), env=env)
    try:
        # stdin is /dev/null: a server that prompted for credentials would have died during start
        assert result.returncode == 0, result.stderr
        assert "listening on 127.0.0.1 only, login required" in result.stdout
        base = f"http://127.0.0.1:{port}"
        for endpoint in ("env/x", "win_data", "events", "close", "delete_env"):
            assert requests.post(f"{base}/{endpoint}", data=json.dumps({"eid": "x"}), timeout=10).status_code == 400
        page = requests.get(base, timeout=10)
        assert page.status_code == 200 and "login" in page.text.lower() and "plotly" not in page.text
        assert servers.login(port, Credentials("alice", "wrong"))[0] == 400
        code, opener = servers.login(port, ALICE)
        assert code == 200
        assert {c: v for c, v in servers.probe(port, opener).items() if v != 200} == {}  # the dashboard's own page

        secret = servers.cookie_secret_path(tmp_path)
        assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text()) == 64
        pid = servers.status(port, tmp_path).pid
        assert ALICE.password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert ALICE.password not in servers.log_path(port, tmp_path).read_text()
    finally:
        launcher("stop", "--port", str(port), "--home", str(tmp_path))

    half = launcher("start", "--port", str(port), "--home", str(tmp_path), env={"VISDOM_USERNAME": "alice"})
    assert half.returncode == 1 and "VISDOM_PASSWORD is not set" in half.stderr


def test_logger_logs_in_and_again_after_a_restart(tmp_path: Path, out: io.StringIO,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISDOM_USERNAME", ALICE.username)
    monkeypatch.setenv("VISDOM_PASSWORD", ALICE.password)
    home, port = tmp_path / "visdom", servers.free_port()
    server = servers.start(port, home, credentials=ALICE)
    logger = VisdomLogger("secured", "http://localhost", port, flush_interval=0.05, out=out)
    try:
        logger.start({"name": "secured"})
        logger.train_loss(1, [0, 1], [0.5, 0.4])
        wait_until(lambda: delivered(logger))
        assert logger.stats().logins == 1

        # A restart that signs cookies with a new secret: the old cookie is refused, the logger
        # logs in again and re-sends the whole dashboard.
        server.stop()
        servers.cookie_secret_path(home).unlink()
        server = servers.start(port, home, credentials=ALICE)
        logger.train_loss(1, [2, 3], [0.3, 0.2])
        wait_until(lambda: delivered(logger))
        logger.close(None)
        held = windows(port, "secured", ALICE.username, ALICE.password)
        assert held["train_loss"]["content"]["data"][0]["x"] == [0, 1, 2, 3]
        assert logger.stats().logins == 2
    finally:
        logger.close(None)
        server.stop()
    assert ALICE.password not in out.getvalue()


def test_wrong_password_is_one_clear_line(tmp_path: Path, out: io.StringIO) -> None:
    with servers.running(home=tmp_path, credentials=ALICE) as server:
        logger = VisdomLogger("secured", "http://localhost", server.port, username="alice", password="wrong",
                              flush_interval=0.05, close_timeout=1, out=out)
        logger.start({"name": "secured"})
        time.sleep(0.5)
        logger.close(None)
    text = out.getvalue()
    assert text.count("refused the login of 'alice'") == 1 and "VISDOM_PASSWORD" in text
    assert logger.stats().delivered == 0 and logger.stats().logins == 0


def test_a_login_server_without_credentials_says_what_to_set(tmp_path: Path, out: io.StringIO,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISDOM_USERNAME", raising=False)
    monkeypatch.delenv("VISDOM_PASSWORD", raising=False)
    with servers.running(home=tmp_path, credentials=ALICE) as server:
        with VisdomLogger("x", "http://localhost", server.port, flush_interval=0.05, close_timeout=1,
                          out=out) as logger:
            logger.start({"name": "x"})
            wait_until(lambda: "require a login" in out.getvalue())
    assert "set VISDOM_USERNAME and VISDOM_PASSWORD" in out.getvalue()


def test_credentials_against_a_server_without_login_still_deliver(visdom_server: servers.Server,
                                                                  out: io.StringIO) -> None:
    with VisdomLogger("open", "http://localhost", visdom_server.port, username="alice", password="pw",
                      flush_interval=0.05, out=out) as logger:
        logger.train_loss(1, [0], [0.5])
        wait_until(lambda: delivered(logger))
    assert logger.stats().logins == 0


# --- what the logger sends -------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("relu", "relu"), ("tiny-1.v2", "tiny-1.v2"), ("a__b", "a__b"),  # names the spec accepts stay
    ("a/b", "a_b"), ("my run 1", "my_run_1"), ("../../etc/passwd", "etc_passwd"), ("a/../b", "a_b"),
    (MARKUP, "img_src_x_onerror_alert_1_script_alert_x_script_"), ("..", "run"), ("", "run"),
    (".hidden", "hidden"), ("x" * 300, "x" * MAX_ENV_CHARS), ("naïve", "na_ve"),
])
def test_env_names_are_safe_file_names(name: str, expected: str) -> None:
    safe = safe_env(name)
    assert safe == expected
    assert NAME.match(safe) and ".." not in safe


def test_logger_uses_the_safe_env_name_and_says_so(out: io.StringIO) -> None:
    with VisdomLogger("../my run", "http://127.0.0.1", servers.free_port(), close_timeout=0.5, out=out) as logger:
        assert logger.env == "my_run" and logger.url.endswith("/env/my_run")
    assert out.getvalue().startswith("visdom: env '../my run' is shown as 'my_run'")


def test_every_text_of_a_real_run_is_escaped(tmp_path: Path, tiny_mnist: Path, visdom_server: servers.Server,
                                             out: io.StringIO) -> None:
    from runner import session, spec

    experiment = spec.load(tiny_spec(tmp_path, tiny_mnist, description=f"shows {MARKUP} & more"))
    logger = VisdomLogger(f"{MARKUP}/..", "http://localhost", visdom_server.port, flush_interval=0.05, out=out)
    summary = session.execute(experiment, lambda run_dir: [logger], out=tmp_path / "run")

    env = logger.env
    assert summary["visdom_env"] == env and NAME.match(env)
    held = windows(visdom_server.port, env)
    texts = {win: w["content"] for win, w in held.items() if w["type"] == "text"}
    # the mistakes' grid is a text too when the tiny digits are all classified right
    assert {"run", "spec", "predictions", "mistake_captions"} <= set(texts) <= {"run", "spec", "predictions",
                                                                                "mistakes", "mistake_captions"}
    for win, content in texts.items():
        assert set(re.findall(r"<\s*/?\s*([A-Za-z]+)", content)) <= TAGS_WE_WRITE, win
    assert "shows &lt;img src=x onerror=alert(1)&gt;&lt;script&gt;" in texts["spec"]
    assert f"&quot;visdom_env&quot;: &quot;{env}&quot;" in texts["spec"]
    titles = [w.get("title", "") for w in held.values()]
    assert not any("<" in t for t in titles)


def test_images_and_text_are_bounded(visdom_server: servers.Server, out: io.StringIO) -> None:
    with VisdomLogger("bounded", "http://localhost", visdom_server.port, flush_interval=0.05, out=out) as logger:
        logger.images(digits(2, side=500))  # far larger than a dashboard digit: not sent at all
        wait_until(lambda: delivered(logger))
        assert "images" not in windows(visdom_server.port, "bounded")
        assert "cannot draw the images window" in out.getvalue() and "500" in out.getvalue()

        logger.images(digits(250))
        logger.predictions(1, [1] * 250, [1] * 250)
        logger.start({"name": "bounded", "notes": "x" * (3 * MAX_TEXT_CHARS)})
        wait_until(lambda: delivered(logger))
    held = windows(visdom_server.port, "bounded")
    cell = 2 * 28 + 2 * 2  # each digit doubled, then padded by 2 on every side
    rows = -(-MAX_IMAGES // 8)
    assert png_size(held["images"]["content"]["src"]) == (8 * cell, rows * cell)
    assert held["predictions"]["content"].count("<td") == MAX_IMAGES
    assert MAX_TEXT_CHARS < len(held["spec"]["content"]) < MAX_TEXT_CHARS + 200
