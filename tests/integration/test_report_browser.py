"""report.html in a real browser, offline: it loads nothing, logs no error, draws every plot.

Headless Chromium (Debian's chromium and chromedriver; Selenium Manager is never asked to
download one) opens the file with the network switched off in three ways: the DevTools offline
emulation, a proxy on a closed port and a host resolver that resolves nothing. Every request
the page makes is read back from the performance log, so a CDN script would fail the test even
if the page still drew. A full-page screenshot is kept under $LLEM_TEST_ARTIFACTS (else the
test's tmp_path) for a person to look at.

Without chromium the test skips, unless LLEM_REQUIRE_DOCKER=1 (CI, which installs it in
.ci/run): there a skip would prove nothing, so it fails.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llem_testkit.measured import measured_study
from llem_testkit.serving import ServingFigures, serving_study

from harness.schema.config import ExperimentConfig
from orchestrator.report.derived import ReportInputs
from orchestrator.report.html import write_html_report
from orchestrator.report.study_data import StudyData

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome-error:")

PLOTS_JS = """
return Array.from(document.querySelectorAll('.plotly-graph-div')).map(div => ({
  id: div.id,
  rendered: div.classList.contains('js-plotly-plot') && !!div._fullData,
  svg: div.querySelectorAll('svg.main-svg').length,
  points: (div._fullData || []).filter(t => t.visible !== false)
           .map(t => (t.x || []).length)}));
"""


def _require_browser() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if not missing:
        return
    message = f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver"
    if os.environ.get("LLEM_REQUIRE_DOCKER") == "1":
        pytest.fail(f"LLEM_REQUIRE_DOCKER=1 but {message}")
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium with every way out to the network closed."""
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--proxy-server=127.0.0.1:9",
                     "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        yield driver
    finally:
        driver.quit()


def _artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LLEM_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _requested_urls(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _plots(driver: Any, expected: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every plot div's state, once all of them are drawn (or the timeout passed)."""
    deadline = time.monotonic() + timeout_s
    plots: list[dict[str, Any]] = driver.execute_script(PLOTS_JS)
    while time.monotonic() < deadline and not (
            len(plots) == expected and all(p["rendered"] for p in plots)):
        time.sleep(0.2)
        plots = driver.execute_script(PLOTS_JS)
    return plots


def _screenshot(driver: Any, path: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(int(height) + 120, 30000))
    time.sleep(0.5)  # the responsive plots redraw at the new size
    driver.save_screenshot(str(path))
    print(f"report screenshot: {path}")


def _serving_figures(config: ExperimentConfig, cycle: int) -> ServingFigures:
    """Cheaper per token and slower to answer as the rate rises; saturated from 8 req/s."""
    rate = config.load.request_rate or 1.0
    return ServingFigures(j_per_token=2.0 / rate ** 0.5, ttft_p90_s=0.05 * rate,
                          tpot_p90_s=0.02 + 0.002 * rate, saturated=rate >= 8)


def _study(kind: str, folder: Path) -> Path:
    """The gpu and cpu sweep studies (one run failed), or a serving study over four rates."""
    if kind == "serving":
        return serving_study(folder, _serving_figures)
    return measured_study(folder, gpus=1 if kind == "gpu" else 0,
                          fail=("002_pytorch-bf16-bs4_c3",))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpu", "cpu", "serving"])
def test_the_report_opens_offline_without_errors_and_draws_every_plot(
        browser: Any, tmp_path: Path, kind: str) -> None:
    study_dir = _study(kind, tmp_path / "study")
    report = write_html_report(StudyData.load(study_dir), ReportInputs(
        carbon_intensity_g_per_kwh=350, electricity_price_per_kwh=0.25))
    expected = report.read_text().count("Plotly.newPlot(")
    assert expected > 0

    browser.get(report.as_uri())
    plots = _plots(browser, expected)
    _screenshot(browser, _artifacts(tmp_path) / f"report-{kind}.png")

    assert len(plots) == expected, f"{expected} figures written, {len(plots)} plot divs found"
    undrawn = [p["id"] for p in plots if not p["rendered"] or not p["svg"]]
    assert not undrawn, f"plots not drawn: {undrawn}"
    empty = [p["id"] for p in plots if not any(n > 0 for n in p["points"])]
    assert not empty, f"plots drawn without a single point: {empty}"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"
    remote = [url for url in _requested_urls(browser) if not url.startswith(LOCAL_SCHEMES)]
    assert not remote, f"the report asked the network for {remote}"
    title = browser.find_element("css selector", "h1").text
    assert title == ("llem report: serve" if kind == "serving" else "llem report: sweep")
