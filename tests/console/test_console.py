"""The web console (GET / of `halyard node --http`) in a real headless
Chromium against a real node: what the page shows must be what the node
holds, and its buttons must change what the node holds.

Dead letters are made the way an application makes them: stomp.py NACKs
messages of /queue/orders on a node with `--max-delivery-attempts 1`. The
two to be NACKed are sent and consumed first, and the three that must stay
in `orders` only after that consumer has gone: with a single delivery
attempt allowed, a message delivered to a consumer that disconnects without
acking it is dead-lettered too (its delivery counts, as in Artemis), so the
consumer must never have been handed them.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from harness.clients import Client
from harness.node import REPO_ROOT

ORDERS = "/queue/orders"
SCREENSHOT = REPO_ROOT / "target" / "console.png"
# The page polls every 2 s; the node samples its history every 5 s.
PAGE_WAIT_S = 30.0


# -- the API, read directly (the ground truth the page is checked against) --


def api_get(node, path: str):
    with urllib.request.urlopen(node.http + path, timeout=10) as r:
        assert r.status == 200, (path, r.status)
        return json.load(r)


def queue_depths(node) -> dict[str, int]:
    return {q["name"]: q["messages"] for q in api_get(node, "/api/queues")["queues"]}


def wait_api(node, pred, what: str, timeout: float = PAGE_WAIT_S) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    depths = {}
    while time.monotonic() < deadline:
        depths = queue_depths(node)
        if pred(depths):
            return depths
        time.sleep(0.1)
    raise AssertionError(f"the API never showed {what}; last depths {depths}")


# -- the page ---------------------------------------------------------------


def cell(driver, queue: str, col: str) -> str | None:
    """The text of a queue table cell, or None if the row is not there."""
    els = driver.find_elements(By.CSS_SELECTOR, f'#queues tr[data-queue="{queue}"] td[data-col="{col}"]')
    return els[0].text.strip() if els else None


def page_state(driver) -> str:
    """What the page shows, for failure messages."""
    try:
        return json.dumps(
            driver.execute_script(
                """
                const t = (s) => { const e = document.querySelector(s); return e ? e.innerText : null; };
                return {
                  badge: t('#node-badge'), errors: document.getElementById('error-banner').hidden ? null : t('#error-banner'),
                  queues: t('#queues'), dlq: t('#dlq'), nodes: t('#nodes'), notice: t('#notice'),
                  jsErrors: window.__consoleErrors,
                };
                """
            ),
            indent=1,
        )
    except WebDriverException as e:
        return f"(page state unavailable: {e.msg})"


def wait_page(driver, pred, what: str, timeout: float = PAGE_WAIT_S):
    def check(d):
        try:
            return pred(d)
        except StaleElementReferenceException:
            return False

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)
    except Exception as e:
        raise AssertionError(f"the page never showed {what} within {timeout:.0f} s: {e!r}\n{page_state(driver)}") from None


def depths_shown(driver, expected: dict[str, int]):
    return all(cell(driver, q, "messages") == str(n) for q, n in expected.items())


def js_errors(driver) -> list[str]:
    errors = [f"window: {e}" for e in driver.execute_script("return window.__consoleErrors || []")]
    try:
        errors += [f"console: {e['message']}" for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    except WebDriverException:
        pass  # a driver without the log endpoint: window.__consoleErrors still counts
    return errors


def save_screenshot(driver, path: Path) -> None:
    """The whole page (Chromium's DevTools capture beyond the viewport), or
    the 1400x900 window if that is not available."""
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    try:
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
    except (WebDriverException, KeyError):
        assert driver.save_screenshot(str(path)), "screenshot failed"
    assert path.stat().st_size > 10_000, f"{path}: suspiciously small screenshot"


def click(driver, css: str) -> None:
    button = WebDriverWait(driver, PAGE_WAIT_S).until(EC.element_to_be_clickable((By.CSS_SELECTOR, css)))
    button.click()


# -- the test ---------------------------------------------------------------


def make_dead_letters(node) -> None:
    """orders: 3 messages waiting; DLQ: 2 dead letters from orders."""
    producer = Client(node)
    consumer = Client(node)
    try:
        for i in range(2):
            producer.send(ORDERS, f"poison order {i}", persistent="true")
        consumer.subscribe(ORDERS, "s", ack="client-individual")
        got = consumer.wait_messages(2, sub="s")
        assert [m.body for m in got] == ["poison order 0", "poison order 1"], [m.body for m in got]
        for m in got:
            consumer.nack(m)  # one attempt allowed: straight to DLQ
        consumer.unsubscribe("s")
        consumer.disconnect()
        for i in range(3):
            producer.send(ORDERS, f"order {i}", persistent="true")
    finally:
        consumer.close_quietly()
        producer.close_quietly()


def test_console_shows_the_node_and_retries_dead_letters(console_node, browser):
    node, driver = console_node, browser
    make_dead_letters(node)
    wait_api(node, lambda d: d.get("orders") == 3 and d.get("DLQ") == 2, "orders=3, DLQ=2")

    driver.get(node.http + "/")
    assert "Halyard" in driver.title

    # The header: this node, live.
    wait_page(
        driver,
        lambda d: d.find_element(By.ID, "node-badge").get_attribute("data-state") == "live",
        "the live badge",
    )
    me = api_get(node, "/api/node")
    assert me["state"] == "live", me
    assert driver.find_element(By.ID, "node-badge").text.strip().lower() == "live"
    assert driver.find_element(By.ID, "node-name").text.strip() == me["node_id"]
    assert driver.find_element(By.ID, "node-epoch").text.strip() == str(me["epoch"])

    # The queues table, as the node holds them.
    wait_page(driver, lambda d: depths_shown(d, {"orders": 3, "DLQ": 2}), "orders=3 and DLQ=2 in the queues table")
    assert cell(driver, "orders", "address").endswith("orders"), cell(driver, "orders", "address")
    assert cell(driver, "orders", "dead_lettered") == "2"

    # The cluster card: one node (no peers configured), this one, live.
    rows = driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")
    assert len(rows) == 1, [r.text for r in rows]
    assert rows[0].get_attribute("data-state") == "live"
    assert me["node_id"] in rows[0].text

    # The dead-letter card lists the two NACKed messages with where they came from.
    dlq_rows = "#dlq [data-dlq='DLQ'] tbody tr"
    wait_page(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, dlq_rows)) == 2, "the 2 dead letters listed")
    texts = [r.text for r in driver.find_elements(By.CSS_SELECTOR, dlq_rows)]
    assert all("orders" in t for t in texts), texts
    assert sorted("poison order 0" in t or "poison order 1" in t for t in texts) == [True, True], texts

    # Sorting: by depth, fullest first, then the other way round.
    def order():
        return [r.get_attribute("data-queue") for r in driver.find_elements(By.CSS_SELECTOR, "#queues tbody tr")]

    click(driver, '#queues th[data-sort="messages"]')
    assert order().index("orders") < order().index("DLQ"), order()
    click(driver, '#queues th[data-sort="messages"]')
    assert order().index("DLQ") < order().index("orders"), order()

    # The charts draw from /api/history once it has two samples (5 s apart).
    wait_page(
        driver,
        lambda d: d.find_element(By.ID, "chart-rates").get_attribute("data-empty") == "false"
        and d.find_elements(By.CSS_SELECTOR, '#chart-rates path[data-series="added"]'),
        "a message-rate line",
        timeout=PAGE_WAIT_S,
    )
    assert len(api_get(node, "/api/history")["samples"]) >= 2

    save_screenshot(driver, SCREENSHOT)

    # Retry: the dead letters go back to orders, on the page and in the node.
    click(driver, '#dlq button[data-action="retry"][data-queue="DLQ"]')
    wait_page(driver, lambda d: depths_shown(d, {"orders": 5, "DLQ": 0}), "orders=5 and DLQ=0 after retry")
    assert "2 messages" in driver.find_element(By.ID, "notice").text, driver.find_element(By.ID, "notice").text
    depths = queue_depths(node)
    assert depths.get("orders") == 5 and depths.get("DLQ", 0) == 0, depths
    assert driver.find_element(By.CSS_SELECTOR, '#dlq button[data-action="retry"][data-queue="DLQ"]').get_attribute(
        "disabled"
    ) is not None, "retry stays enabled on an empty DLQ"

    # Purge asks first; accepted, it empties the queue. One more dead letter,
    # from a queue of its own so that nothing else gets delivered.
    poison = Client(node)
    try:
        poison.send("/queue/payments", "poison payment", persistent="true")
        poison.subscribe("/queue/payments", "p", ack="client-individual")
        poison.nack(poison.wait_messages(1, sub="p")[0])
        poison.disconnect()
    finally:
        poison.close_quietly()
    wait_page(driver, lambda d: depths_shown(d, {"orders": 5, "payments": 0, "DLQ": 1}), "DLQ=1 from payments")
    click(driver, '#dlq button[data-action="purge"][data-queue="DLQ"]')
    alert = WebDriverWait(driver, 10).until(EC.alert_is_present())
    assert "Purge DLQ" in alert.text, alert.text
    alert.accept()
    wait_page(driver, lambda d: depths_shown(d, {"orders": 5, "DLQ": 0}), "DLQ=0 after purge")
    assert "Purged 1 message from DLQ" in driver.find_element(By.ID, "notice").text
    depths = queue_depths(node)
    assert depths.get("orders") == 5 and depths.get("DLQ", 0) == 0 and depths.get("payments", 0) == 0, depths

    assert driver.find_element(By.ID, "error-banner").get_attribute("hidden") is not None, page_state(driver)
    assert driver.find_element(By.ID, "backup-banner").get_attribute("hidden") is not None, page_state(driver)
    errors = js_errors(driver)
    assert errors == [], errors
