"""Is a started Visdom server ready: HTTP checks as a browser would make them, straight to 127.0.0.1.

`wait_ready` polls the index page until it answers 200 (or the process exits, or time runs out),
logs in when the server has a login, then `probe`s the page and every script and stylesheet it
references once: static files either exist or never will. `fetch` and `login` are the launcher's
only HTTP; they never go through an http_proxy from the environment (`DIRECT`).
"""

from __future__ import annotations

import http.cookiejar
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from urllib.parse import urljoin

from dashboards.visdom.access import Credentials
from dashboards.visdom.process import Server, StartFailed, alive, log_tail

# Straight to 127.0.0.1, never through an http_proxy from the environment.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _cookie_opener() -> urllib.request.OpenerDirector:
    """Like `DIRECT`, and keeps the login cookie of a login-enabled server."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


class _PageRefs(HTMLParser):
    """Collects what a page makes the browser load: script src and link href."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        value = dict(attrs).get(wanted) if wanted else None
        if value:
            self.refs.append(value)


def fetch(url: str, timeout: float = 5.0, opener: urllib.request.OpenerDirector = DIRECT,
          data: bytes | None = None) -> tuple[int | str, bytes]:
    """HTTP status and body (of a POST when `data` is given), or the error's text when there was no
    HTTP answer."""
    try:
        with opener.open(url, data=data, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc)), b""


def probe(port: int, opener: urllib.request.OpenerDirector = DIRECT) -> dict[str, int | str]:
    """Status of the index page and of every script and stylesheet it references, by URL.

    Without a login cookie in `opener`, a login-enabled server's index page is its login page.
    """
    index = f"http://127.0.0.1:{port}/"
    code, body = fetch(index, opener=opener)
    result: dict[str, int | str] = {index: code}
    if code == 200:
        parser = _PageRefs()
        parser.feed(body.decode("utf-8", "replace"))
        for ref in parser.refs:
            url = urljoin(index, ref)
            result[url] = fetch(url, opener=opener)[0]
    return result


def login(port: int, credentials: Credentials,
          opener: urllib.request.OpenerDirector | None = None) -> tuple[int | str, urllib.request.OpenerDirector]:
    """Log in as a browser does: 200 and an opener holding the cookie; 400 for wrong credentials.

    A server without a login answers 500 (it has no credentials to compare with).
    """
    opener = opener or _cookie_opener()
    code, _ = fetch(f"http://127.0.0.1:{port}/", opener=opener, data=credentials.login_body())
    return code, opener


def wait_ready(server: Server, deadline: float, timeout: float, credentials: Credentials | None = None) -> None:
    """Return once the server's page and every asset it references answer 200; raise StartFailed
    when the process exits, `deadline` passes, the login is refused or an asset is missing."""
    index = f"http://127.0.0.1:{server.port}/"
    while True:
        if not alive(server.pid):
            raise StartFailed(f"the Visdom server exited during start; the end of "
                              f"{server.log_path}:\n{log_tail(server)}")
        if fetch(index, timeout=2.0)[0] == 200:
            break
        if time.monotonic() > deadline:
            raise StartFailed(f"the Visdom server did not answer on {index} within {timeout:g} s; "
                              f"the end of {server.log_path}:\n{log_tail(server)}")
        time.sleep(0.1)
    opener = DIRECT
    if credentials is not None:
        code, with_cookie = login(server.port, credentials)
        if code == 200:
            opener = with_cookie  # so the probe below checks the dashboard page, not the login page
        elif code == 400:
            raise StartFailed(f"the Visdom server at {index} refuses the login of {credentials.username!r}; "
                              f"it was started with other credentials: stop it and start it again.")
        # otherwise a server started without a login (500): the probe below is all there is to do
    # Static files either exist or never will: one pass, no waiting.
    broken = {url: code for url, code in probe(server.port, opener).items() if code != 200}
    if broken:
        listing = "\n".join(f"  {code}  {url}" for url, code in broken.items())
        raise StartFailed(f"the Visdom page at {index} references files that do not load:\n{listing}")
