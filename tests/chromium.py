"""Headless Chromium for the browser tests and the benchmarks that screenshot: where it is, the flags
that work in containers, a page of a fresh browser, and logging it in to a Visdom server with a
stored login as a person does (the token link `make visdom` prints).

A plain module (not conftest), without torch, so benchmarks can import it too."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import quote, urlsplit

from dashboards.visdom.access import local_credentials

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Headless flags known to work in containers; Playwright adds --headless and a fresh profile itself.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}


@contextmanager
def page(viewport: dict[str, int] | None = None) -> Iterator[Any]:
    """A page of a fresh headless Chromium (Playwright), closed with its browser afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport=viewport or VIEWPORT)
        finally:
            browser.close()


def log_in(page: Any, url: str) -> None:
    """Open the token link of the Visdom server at `url` when this user started it with a stored login
    (the browser then holds its login cookie); nothing for a server without one."""
    parts = urlsplit(url)
    credentials = local_credentials(parts.hostname or "", parts.port or 80)
    if credentials is not None:
        page.goto(f"{parts.scheme}://{parts.netloc}/?token={quote(credentials.password, safe='')}")


def open_env_list(page: Any, url: str, timeout_ms: int = 60_000) -> None:
    """Load Visdom at `url` (logged in first, if its server asks) and open its env selector, until it
    lists the envs."""
    log_in(page, url)
    page.goto(url)
    page.wait_for_selector(".rc-tree-select", timeout=timeout_ms)
    page.click(".rc-tree-select")
    page.wait_for_selector(".rc-tree-select-tree-title", timeout=timeout_ms)
