"""Fixtures of the web console test: a node serving HTTP and a headless
Chromium driven by Selenium.

- `console_node`: a started `LocalNode` (harness.node) with `--http` on a free
  port and `--max-delivery-attempts 1` (a single NACK dead-letters a message);
  `console_node.http` is its base URL. At teardown it must not have panicked,
  and it is stopped.
- `browser`: Debian's headless Chromium (/usr/bin/chromium, driver
  /usr/bin/chromedriver; both paths given, so Selenium Manager never looks
  for, let alone downloads, a browser), 1400x900, with the browser console
  log captured. Quit at teardown.

Override the paths with CHROMIUM_BIN and CHROMEDRIVER_BIN.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from harness.node import LocalNode, free_port

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")


@pytest.fixture
def console_node(tmp_path) -> LocalNode:
    http_port = free_port()
    n = LocalNode(tmp_path, extra_args=["--http", f"127.0.0.1:{http_port}", "--max-delivery-attempts", "1"])
    n.http = f"http://127.0.0.1:{http_port}"
    try:
        n.start()
        yield n
    finally:
        try:
            n.assert_no_panic()
        finally:
            n.close()


@pytest.fixture
def browser(tmp_path):
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            raise RuntimeError(f"{path} is missing; scripts/ci/console.sh installs chromium and chromium-driver")
    profile = tmp_path / "chromium-profile"
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # we run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,900",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--force-color-profile=srgb",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        driver.set_window_size(1400, 900)
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
