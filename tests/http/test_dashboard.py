"""The dashboard in a real browser: headless Chromium (Debian's, which bin/test
installs) driven by Playwright. Figures move live, a killed worker shows its restart,
the buttons and the submit form work, dark mode toggles and is remembered, nothing is
logged to the console, and a read-only token sees figures but no buttons. The tests
save screenshots; docs/img has two of them."""

from __future__ import annotations

import os
import shutil
import signal

import pytest
from playwright.sync_api import expect, sync_playwright

from actorq import Client
from actorq.http.auth import digest
from actorq.testing import ROOT, NodeProcess, wait_until
from tests.http.nodes import NODE

pytestmark = pytest.mark.timeout(120)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# What the machine's closed network and a root user need: no sandbox, no calls home.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "docs" / "img"


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def dashboard(browser, tmp_path):
    """(node, page, console errors): a node and a page on its dashboard."""
    node = NodeProcess(NODE.format(tokens=""), tmp_path, "node")
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(node.http + "/")
    expect(page.get_by_test_id("live-state")).to_have_text("live", timeout=10_000)
    yield node, page, errors
    context.close()
    assert not node.cleanup()


def test_figures_move_live_and_a_killed_worker_shows_its_restart(dashboard, tmp_path):
    node, page, errors = dashboard
    expect(page.get_by_test_id("workers-alive")).to_have_text("2")
    # When tasks are submitted elsewhere, the figures change with no reload
    with Client(node.broker) as c:
        c.gather(c.submit_many([("actorq.demo:add", (i, i)) for i in range(40)]), timeout=20)
    expect(page.get_by_test_id("tasks-succeeded")).to_have_text("40", timeout=3_000)
    page.screenshot(path=tmp_path / "overview-light.png")
    # And a killed worker is replaced before our eyes
    page.goto(node.http + "/#workers")
    expect(page.get_by_test_id("worker-row")).to_have_count(2)
    victim = page.get_by_test_id("worker-row").first.get_attribute("data-worker")
    pid = int(page.get_by_test_id("worker-row").first.get_attribute("data-pid"))
    os.kill(pid, signal.SIGKILL)
    expect(page.locator(f'[data-worker="{victim}"]')).to_have_count(0, timeout=5_000)
    expect(page.get_by_test_id("worker-row")).to_have_count(2, timeout=10_000)
    expect(page.get_by_test_id("restarts-default")).to_have_text("1", timeout=5_000)
    assert not errors, errors


def test_the_buttons_and_the_submit_form_work_and_dark_mode_is_remembered(dashboard, tmp_path):
    node, page, errors = dashboard
    # The submit form
    page.goto(node.http + "/#submit")
    form = page.get_by_test_id("submit-form")
    form.locator("[name=task]").fill("actorq.demo:async_sleep")
    form.locator("[name=args]").fill("[30]")
    form.locator("button").click()
    expect(page.get_by_test_id("submitted")).to_contain_text("submitted ")
    tid = page.get_by_test_id("submitted").inner_text().split()[1]
    # Cancel from the task's page
    page.goto(node.http + "/#tasks")
    page.locator("#task-filter [name=id]").fill(tid)
    page.locator("#task-filter button").click()
    expect(page.get_by_test_id("detail-state")).to_have_text("running", timeout=5_000)
    page.get_by_test_id("task-detail").get_by_test_id("cancel").click()
    expect(page.get_by_test_id("detail-state")).to_have_text("cancelled")
    # Requeue a dead task
    with Client(node.broker) as c:
        dead = c.submit("actorq.demo:fail", ("no",))
        wait_until(lambda: c.status(dead.id).state == "dead", 10)
        page.goto(node.http + "/#dead")
        expect(page.get_by_test_id("dead-row")).to_have_count(1)
        page.get_by_test_id("requeue-dead").click()
        wait_until(lambda: c.status(dead.id).attempts == 2, 10)
        # Pause a queue, and resume it
        c.submit("actorq.demo:add", (1, 1), queue="reports")
        c.flush()
    page.goto(node.http + "/#queues")
    page.get_by_test_id("pause-reports").click()
    expect(page.get_by_test_id("resume-reports")).to_be_visible()
    page.get_by_test_id("resume-reports").click()
    expect(page.get_by_test_id("pause-reports")).to_be_visible()
    # Scale the pool
    page.goto(node.http + "/#workers")
    page.get_by_test_id("min-default").fill("1")
    page.get_by_test_id("max-default").fill("3")
    page.get_by_test_id("scale-default").click()
    with Client(node.broker) as c:
        wait_until(lambda: (s := c.stats().pools.get("default")) and s.max_workers == 3, 10)
    # Dark mode toggles and is remembered
    page.goto(node.http + "/#overview")
    page.get_by_test_id("theme-toggle").click()
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.get_by_test_id("live-state")).to_have_text("live", timeout=10_000)
    page.screenshot(path=tmp_path / "overview-dark.png")
    assert not errors, errors


def test_a_read_only_token_sees_figures_but_no_buttons(browser, tmp_path):
    read, admin = "read-token-for-the-browser", "admin-token-for-the-browser"
    tokens = (f'[[http.tokens]]\nname = "v"\nrole = "read"\nsha256 = "{digest(read)}"\n'
              f'[[http.tokens]]\nname = "a"\nrole = "admin"\nsha256 = "{digest(admin)}"\n')
    node = NodeProcess(NODE.format(tokens=tokens), tmp_path, "node")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(node.http + "/")
        expect(page.get_by_test_id("login")).to_be_visible()
        page.locator("#token").fill(read)
        page.locator("#login button").click()
        expect(page.get_by_test_id("workers-alive")).to_have_text("2", timeout=10_000)
        page.goto(node.http + "/#dead")
        expect(page.get_by_test_id("requeue-all")).to_be_hidden()
        expect(page.locator("nav a[href='#submit']")).to_be_hidden()
    finally:
        context.close()
        assert not node.cleanup()


def test_the_docs_show_the_dashboard_light_and_dark():
    for name in ("dashboard-light.png", "dashboard-dark.png"):
        assert (SHOTS / name).stat().st_size > 10_000
    assert "img/dashboard-light.png" in (ROOT / "docs" / "operations.md").read_text()
