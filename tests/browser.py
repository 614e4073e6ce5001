"""Headless Chromium driven by Selenium, for the console's end-to-end tests. Not a test module.

Uses the system's `chromium` and `chromium-driver` (Debian packages; .ci/run installs them),
never a downloaded browser: the driver's path is given, so Selenium Manager stays idle.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def start_chromium(profile: Path, width: int = 1280, height: int = 900) -> webdriver.Chrome:
    """A fresh headless Chromium (its own profile in `profile`) that records console messages."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    return driver


def console_messages(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The browser console's messages since the last call (CSP violations are among them)."""
    return list(driver.get_log("browser"))


def grant_clipboard(driver: webdriver.Chrome, origin: str) -> None:
    """Let pages of `origin` read the clipboard too, so a test can check what a button copied."""
    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )


def clipboard_text(driver: webdriver.Chrome) -> str:
    """What the system clipboard holds, as the page reads it."""
    text = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, (e) => done('ERROR: ' + e));"
    )
    return str(text)


def emulate_color_scheme(driver: webdriver.Chrome, scheme: str) -> None:
    """Make `prefers-color-scheme` report `scheme` ('light' or 'dark')."""
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
