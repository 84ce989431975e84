"""The web console in a real browser: Debian's headless Chromium driven by selenium (WebDriver through
Debian's chromedriver), against a real broker with --http-port. `make test` installs chromium and
chromium-driver when missing; without them (no Debian mirror) these tests skip.

Each page is loaded and must show the broker's objects; a queue is created and purged through the
page's own form and button; and the overview, with traffic flowing, is kept as a screenshot under
build/ (build/console-overview.png), the test's artefact.
"""
import shutil
import threading
import time
from pathlib import Path

import pytest
from proton import Message, Timeout
from proton.utils import BlockingConnection

from tests.support.broker import wait_until
from tests.support.http import get_json, module_http_broker

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Debian's chromium and chromium-driver are not installed")
ARTEFACTS = Path(__file__).resolve().parents[2] / "build"
TIMEOUT = 30


web = module_http_broker("console")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as e:
        pytest.skip("chromium does not start here: %s" % e.msg)
    driver.set_page_load_timeout(TIMEOUT)
    yield driver
    driver.quit()


def open_page(browser, url, page, interval=500):
    if not browser.current_url.startswith(url + "/?interval=%d" % interval):
        browser.get("%s/?interval=%d#/%s" % (url, interval, page))
    else:
        browser.execute_script("location.hash = arguments[0]", "#/" + page)
    wait_until(lambda: browser.execute_script("return document.body.dataset.loaded") == page, TIMEOUT,
               message="the %s page to load" % page)


def text_of(browser, selector):
    """The text of every element matching ``selector``, read at one instant (the page redraws its
    tables at every poll, so elements found earlier may be gone)."""
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", selector)


def click(browser, selector):
    """A real click on the element, found again if a redraw replaced it in between."""
    def clicked():
        try:
            browser.find_element(By.CSS_SELECTOR, selector).click()
            return True
        except StaleElementReferenceException:
            return False
    wait_until(clicked, TIMEOUT, message="a click on " + selector)


def js_errors(browser):
    """Script errors the page logged (an action the broker refused is a network entry, not one)."""
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]


def queue_row(browser, name):
    """The cells of the queue's row on the queues page, or None."""
    return browser.execute_script(
        "const r = [...document.querySelectorAll('#queues-table tbody tr')]"
        ".find(tr => tr.dataset.queue === arguments[0]);"
        "return r ? [...r.cells].map(c => c.textContent) : null", name)


def test_every_page_shows_the_broker(web, browser):
    url = web.http_url
    conn = BlockingConnection(web.url, timeout=TIMEOUT)
    try:
        receiver = conn.create_receiver("amq.fanout")      # a link and a subscription queue to show
        open_page(browser, url, "overview")
        labels = text_of(browser, "#overview-cards .label")
        assert "Connections" in labels and "Journal syncs" in labels
        assert browser.find_element(By.ID, "status").text == "ready"
        assert browser.find_elements(By.CSS_SELECTOR, "#chart-rates .uplot")    # the chart is drawn
        open_page(browser, url, "queues")
        wait_until(lambda: text_of(browser, "#queues-table tbody tr"), TIMEOUT)
        open_page(browser, url, "exchanges")
        assert {"amq.direct", "amq.topic", "amq.fanout", "amq.match"} <= set(
            text_of(browser, "#exchanges-table tbody tr td:first-child"))
        assert "amq.fanout" in text_of(browser, "#bindings-table tbody tr td:first-child")
        open_page(browser, url, "connections")
        assert len(text_of(browser, "#connections-table tbody tr")) >= 1
        assert "outgoing" in text_of(browser, "#links-table tbody tr td:nth-child(2)")
        open_page(browser, url, "ha")
        assert "standalone" in text_of(browser, "#ha-table td")
        receiver.close()
    finally:
        conn.close()
    assert not js_errors(browser)


def test_create_and_purge_a_queue_through_the_console(web, browser):
    url = web.http_url
    name = "console-%d" % time.monotonic_ns()
    open_page(browser, url, "queues")
    browser.find_element(By.ID, "create-queue-name").send_keys(name)
    click(browser, "#create-queue-button")
    wait_until(lambda: queue_row(browser, name), TIMEOUT, message="the new queue's row")
    assert browser.find_element(By.ID, "message").text == "Queue %s added" % name
    assert get_json(url + "/api/queues?filter=" + name)[1]["total"] == 1
    conn = BlockingConnection(web.url, timeout=TIMEOUT)
    try:
        sender = conn.create_sender(name)
        for i in range(5):
            sender.send(Message(body="m%d" % i))
    finally:
        conn.close()
    wait_until(lambda: queue_row(browser, name)[2] == "5", TIMEOUT, message="depth 5 on the page")
    click(browser, 'button[data-action="purge"][data-queue="%s"]' % name)
    wait_until(lambda: queue_row(browser, name)[2] == "0", TIMEOUT, message="depth 0 after the purge")
    assert get_json(url + "/api/queues?filter=" + name)[1]["queues"][0]["discardsPurge"] == 5
    # the same error qpid-config would get: the queue exists
    browser.find_element(By.ID, "create-queue-name").clear()
    browser.find_element(By.ID, "create-queue-name").send_keys(name)
    click(browser, "#create-queue-button")
    wait_until(lambda: browser.find_element(By.ID, "message").text == "object already exists: %s" % name,
               TIMEOUT)
    click(browser, 'button[data-action="delete"][data-queue="%s"]' % name)
    browser.switch_to.alert.accept()
    wait_until(lambda: queue_row(browser, name) is None, TIMEOUT, message="the row gone after delete")
    assert get_json(url + "/api/queues?filter=" + name)[1]["total"] == 0
    assert not js_errors(browser)


class Load:
    """A producer and a consumer moving small messages through one queue until stopped (bounded)."""

    def __init__(self, broker, queue, seconds=60):
        self.broker, self.queue, self.deadline = broker, queue, time.monotonic() + seconds
        self.stop = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self.produce, daemon=True),
                        threading.Thread(target=self.consume, daemon=True)]

    def running(self):
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def produce(self):
        conn = BlockingConnection(self.broker.url, timeout=TIMEOUT)
        try:
            sender = conn.create_sender(self.queue)
            while self.running():
                sender.send(Message(body=b"x" * 512))
                self.sent += 1
        finally:
            conn.close()

    def consume(self):
        conn = BlockingConnection(self.broker.url, timeout=TIMEOUT)
        try:
            receiver = conn.create_receiver(self.queue, credit=100)
            while self.running():
                try:
                    receiver.receive(timeout=0.5)
                    receiver.accept()
                except Timeout:         # the producer is slower: go on
                    continue
        finally:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(TIMEOUT)


def test_overview_under_load_screenshot(web, browser):
    url = web.http_url
    name = "load-%d" % time.monotonic_ns()
    from tests.integration.test_qmf_agent import Console
    console = Console(web.url)
    try:
        console.create("queue", name)
    finally:
        console.close()
    with Load(web, name) as load:
        wait_until(lambda: load.sent > 100, TIMEOUT, message="traffic")
        open_page(browser, url, "overview", interval=300)
        points = "return state.series[0].length"
        wait_until(lambda: browser.execute_script(points) >= 12, TIMEOUT, message="12 points on the charts")
        rates = browser.execute_script("return state.series[1]")
        assert max(rates) > 0, rates
        ARTEFACTS.mkdir(exist_ok=True)
        shot = ARTEFACTS / "console-overview.png"
        assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    assert not js_errors(browser)
