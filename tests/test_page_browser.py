"""The page at / in a real browser: headless Chromium (Debian packages chromium + chromium-driver, driven
by selenium; nothing is downloaded) against the service on a local port, serving real tiny exports.
It picks a variant, translates a sentence, and checks the translation, its figures and the heatmap appear."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.service_helpers import make_app

pytest_plugins = ["tests.service_fixtures"]  # variants_root

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver (.ci/run does this)"


def browser_or_skip():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(f"chromium and chromedriver are not installed: {INSTALL}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,1500"):
        options.add_argument(arg)
    try:
        return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    except Exception as e:  # a broken install: say so rather than fail the suite
        pytest.skip(f"chromium did not start ({type(e).__name__}: {str(e).splitlines()[0]}); reinstall: {INSTALL}")


@pytest.fixture(scope="module")
def server(variants_root):
    """The app under uvicorn on a free local port (a browser needs real HTTP)."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(make_app(variants_root, port=port), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the service did not become ready"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_page_translates_and_shows_the_heatmap(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser_or_skip()
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(server + "/")
        wait.until(lambda d: len(Select(d.find_element(By.ID, "variant")).options) == 2)
        Select(driver.find_element(By.ID, "variant")).select_by_value("tiny-int8")
        box = driver.find_element(By.ID, "text")
        box.clear()
        box.send_keys("Two dogs play in the snow.")
        Select(driver.find_element(By.ID, "kind")).select_by_value("cross")
        driver.find_element(By.ID, "go").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "s-variant"), "tiny-int8"))
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById('heatmap'); return i.complete && i.naturalWidth > 0"))
        assert driver.find_element(By.ID, "error").text == ""
        assert driver.find_element(By.ID, "translation").text.strip()
        assert driver.find_element(By.ID, "s-size").text.endswith(("kB", "MB"))
        assert "ms" in driver.find_element(By.ID, "s-latency").text
        assert driver.find_element(By.ID, "s-bleu").text == "1.00"
        width, height = driver.execute_script(
            "const i = document.getElementById('heatmap'); return [i.naturalWidth, i.naturalHeight]")
        assert width >= 300 and height >= 260
        assert driver.find_element(By.ID, "layer").get_attribute("max") == "1"  # from the X-Tzip-Layers header
        shot = Path(os.environ.get("TZIP_SCREENSHOT_DIR", tmp_path)) / "page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        # a head the variant lacks: the page shows the service's 422 message
        driver.execute_script("document.getElementById('head').removeAttribute('max')")
        head = driver.find_element(By.ID, "head")
        head.clear()
        head.send_keys("7")
        driver.find_element(By.ID, "go").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "error"), "head 7 is out of range"))
    finally:
        driver.quit()
