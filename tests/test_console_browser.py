"""The web console end to end in a real headless Chromium (Debian's ``chromium``, driven by
the ``playwright`` package with that binary; no browser is downloaded): brokers registered
over the wire render with their liveness countdown, topics search, a route, KV namespaces and
the pods show, admin controls appear only with the token, and a broker's expiry updates the
page live. A screenshot is saved (``NAMESRV_SCREENSHOT_DIR`` copies it, e.g. to docs/)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from namesrv_redis.sim.broker import SimBroker
from tests.brokerthread import BrokerThread
from tests.conftest import RedisServerProcess
from tests.serverproc import NamesrvProcess

CHROMIUM = "/usr/bin/chromium"
TOKEN = "console-test-token"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

playwright_sync = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def estate() -> Iterator[tuple[NamesrvProcess, list[BrokerThread]]]:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail("chromium missing: .ci/run installs Debian's chromium package")
        pytest.skip("Debian's chromium is not installed")
    redis = RedisServerProcess().start()
    pod = NamesrvProcess(redis.url, "console", "--admin-token", TOKEN).start()
    brokers = []
    for cluster, name, addr, timeout_ms, topics in (
        ("ProdCluster", "broker-a", "10.0.0.1:10911", 600_000, ["Orders", "Payments", "Audit"]),
        ("ProdCluster", "broker-b", "10.0.0.2:10911", 600_000, ["Orders", "Payments"]),
        ("BatchCluster", "broker-short", "10.0.1.1:10911", 6_000, ["Nightly", "Reports"]),
    ):
        sim = SimBroker(cluster, name, addr, heartbeat_timeout_ms=timeout_ms)
        sim.add_topics(topics, queues=8)
        brokers.append(BrokerThread(pod.port, sim).start())
    with httpx.Client(base_url=f"http://127.0.0.1:{pod.http_port}") as http:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = http.put("/v1/kv/ORDER_TOPIC_CONFIG/Orders", json={"value": "broker-a:8"}, headers=auth)
        r.raise_for_status()
    yield pod, brokers
    for b in brokers:
        b.stop()
    pod.stop()
    redis.stop()


@pytest.mark.slow
def test_console_renders_the_estate_and_follows_an_expiry(
    estate: tuple[NamesrvProcess, list[BrokerThread]], tmp_path: Path
) -> None:
    pod, _ = estate
    url = f"http://127.0.0.1:{pod.http_port}/console/"
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        expect = playwright_sync.expect

        short = page.locator('#brokers tr[data-addr="10.0.1.1:10911"]')
        expect(short).to_contain_text("broker-short")
        expect(short).to_contain_text("alive")
        expect(page.locator("#live")).to_have_text("live")
        expect(page.locator("#namespace")).to_have_text("namespace console")
        expect(page.locator("#brokers tbody tr")).to_have_count(3)
        # the countdown moves, between the broker's 6 s timeout and 0
        first = int(short.locator("td.expires").inner_text().split()[0])
        assert 0 <= first <= 6
        expect(short.locator("td.expires")).not_to_have_text(f"{first} s", timeout=3000)
        assert "@" in page.locator('#brokers tr[data-addr="10.0.0.1:10911"] td').nth(6).inner_text()

        # read-only without the token; the token brings the admin controls
        assert not page.locator("#brokers button").first.is_visible()
        expect(page.locator("#mode")).to_have_text("read-only")
        page.fill("#token", TOKEN)
        page.click("#token-form button")
        expect(page.locator("#mode")).to_have_text("admin")
        expect(page.locator("#brokers button").first).to_be_visible()

        # topics with search, a route, KV namespaces, pods
        page.fill("#topic-search", "pay")
        expect(page.locator("#topics li")).to_have_text(["Payments"])
        page.click("#topics li")
        route = page.locator("#route-table tbody tr")
        expect(route).to_have_count(2)
        expect(route.first).to_contain_text("RW-")
        page.locator("#kv-namespaces li", has_text="ORDER_TOPIC_CONFIG").click()
        expect(page.locator("#kv")).to_contain_text("broker-a:8")
        expect(page.locator("#pods li")).to_have_text([pod.addr])

        shot = tmp_path / "console.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("NAMESRV_SCREENSHOT_DIR"):
            shutil.copy(shot, Path(os.environ["NAMESRV_SCREENSHOT_DIR"]) / "console.png")

        # broker-short stops heartbeating: its expiry reaches the page over the event stream
        started = time.monotonic()
        expect(short).to_have_count(0, timeout=20_000)
        expect(page.locator("#brokers tbody tr")).to_have_count(2)
        page.fill("#topic-search", "")
        expect(page.locator("#topics li", has_text="Nightly")).to_have_count(0)
        print(f"expiry reached the page {time.monotonic() - started:.1f}s after the screenshot")
        browser.close()


def test_console_assets_and_reads(estate: tuple[NamesrvProcess, list[BrokerThread]]) -> None:
    pod, _ = estate
    with httpx.Client(base_url=f"http://127.0.0.1:{pod.http_port}") as http:
        assert http.get("/console").headers["location"] == "/console/"
        page = http.get("/console/")
        assert page.status_code == 200 and "console.js" in page.text
        assert "http" not in page.text.replace("http-equiv", "")  # no CDN, nothing remote
        assert http.get("/console/console.js").status_code == 200
        assert "ORDER_TOPIC_CONFIG" in http.get("/v1/kv").json()["namespaces"]
        info = http.get("/v1/console/info").json()
        assert info == {
            "namespace": "console",
            "version": info["version"],
            "adminTokenRequired": True,
        }
        # read-only without the token: the server refuses the console's changes
        r = http.post("/v1/brokers/broker-a/write-permission", json={"enabled": False})
        assert r.status_code == 401


def test_root_leads_to_the_console(estate: tuple[NamesrvProcess, list[BrokerThread]]) -> None:
    pod, _ = estate
    with httpx.Client(base_url=f"http://127.0.0.1:{pod.http_port}") as http:
        root = http.get("/")
        assert root.status_code in (302, 307) and root.headers["location"] == "/console/"
        assert "<title>" in http.get("/", follow_redirects=True).text


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return url.startswith(("data:", "blob:", "about:")) or host in ("127.0.0.1", "localhost")


@pytest.mark.slow
def test_api_docs_render_offline(estate: tuple[NamesrvProcess, list[BrokerThread]]) -> None:
    """/docs (Swagger UI) and /redoc render in a browser that may reach nothing but the pod:
    their scripts, styles and icons are packaged, none comes from a CDN."""
    pod, _ = estate
    base = f"http://127.0.0.1:{pod.http_port}"
    remote: list[str] = []

    def only_loopback(route: Any) -> None:
        if is_loopback_url(route.request.url):
            route.continue_()
        else:
            remote.append(route.request.url)
            route.abort()

    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.route("**/*", only_loopback)
        page = context.new_page()
        expect = playwright_sync.expect
        failed: list[tuple[str, str]] = []
        page.on("requestfailed", lambda r: failed.append((r.url, r.failure or "")))
        errors: list[str] = []
        page.on("response", lambda r: errors.append(r.url) if r.status >= 400 else None)

        page.goto(f"{base}/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("namesrv-redis")
        operations = page.locator(".opblock-summary-path")
        expect(operations.first).to_be_visible(timeout=15_000)
        paths = operations.all_inner_texts()
        assert any("/v1/routes/" in p for p in paths), paths
        assert any("/write-permission" in p for p in paths), paths

        page.goto(f"{base}/redoc")
        expect(page.locator("h1")).to_contain_text("namesrv-redis", timeout=15_000)
        expect(page.locator("[role=menuitem]", has_text="Get Clusters").first).to_be_attached()
        expect(page.locator(".api-content")).to_contain_text("write-permission")
        checked = list(failed), list(errors)

        page.goto(f"{base}/")  # the pod's address in a browser: the console
        expect(page).to_have_url(f"{base}/console/")
        browser.close()
    failed, errors = checked
    assert remote == [], f"the docs pages asked the internet for {remote}"
    # everything of the pod's loaded; ReDoc's sidebar logo on cdn.redoc.ly is refused by
    # the page's CSP, never requested
    assert errors == []
    assert [u for u, _ in failed if is_loopback_url(u)] == []
    assert all(why == "csp" for u, why in failed if not is_loopback_url(u)), failed
