#!/usr/bin/env python3
"""End-to-end test of the operator console in headless Chromium (Playwright).

Run by tests/api/console.rs against a served app; settings come from the
environment:
  CONSOLE_URL                  the app's base URL (http://127.0.0.1:PORT)
  ADMIN_SERVICE, ADMIN_TOKEN   every right, including admin on sys and audit
  READER_SERVICE, READER_TOKEN  may not read billing secrets (leaves an access request)
  VIEWER_SERVICE, VIEWER_TOKEN  may read and write secrets, no admin rights
  TOKEN_SERVICE                a config.yaml service without a token (self-registers)
  SCREENSHOTS                  where to write one PNG per view (optional)
  CHROMIUM                     the browser (default /usr/bin/chromium)

Fails (non-zero exit) on any browser console error or page error, on a
plaintext value in the DOM before Reveal (or after Hide), and on any step
whose expectation is not met. Waits only through Playwright's auto-waiting.
"""
import json
import os
import re
import sys
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["CONSOLE_URL"].rstrip("/")
ADMIN = (os.environ["ADMIN_SERVICE"], os.environ["ADMIN_TOKEN"])
READER = (os.environ["READER_SERVICE"], os.environ["READER_TOKEN"])
VIEWER = (os.environ["VIEWER_SERVICE"], os.environ["VIEWER_TOKEN"])
TOKEN_SERVICE = os.environ["TOKEN_SERVICE"]
SHOTS = os.environ.get("SCREENSHOTS")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

PROJECT = "billing"
PATH = "prod/db-password"
V1, V2, V3 = "first-Xq81-plaintext", "lost-Wz42-update", "second-Kp77-plaintext"

expect.set_options(timeout=10_000)


def api(who, method, path, body=None):
    """A direct API call (the other actors in the story: services, a second operator)."""
    headers = {"Content-Type": "application/json"}
    if who:
        headers.update({"X-Service": who[0], "X-Token": who[1]})
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Browser:
    """One session (a browser context) with the console-error and plaintext guards."""

    def __init__(self, browser, errors, allowed):
        self.context = browser.new_context(viewport={"width": 1180, "height": 720}, accept_downloads=True)
        self.page = self.context.new_page()
        self.allowed = allowed

        def on_console(msg):
            if msg.type != "error":
                return
            for i, pattern in enumerate(self.allowed):
                if pattern in msg.text:
                    del self.allowed[i]
                    return
            errors.append(f"console error: {msg.text}")

        self.page.on("console", on_console)
        self.page.on("pageerror", lambda e: errors.append(f"page error: {e}"))

    def sign_in(self, who):
        p = self.page
        p.goto(BASE + "/ui/")
        p.get_by_label("Service").fill(who[0])
        p.get_by_label("Token").fill(who[1])
        p.get_by_role("button", name="Sign in").click()
        expect(p.get_by_text(f"Signed in as {who[0]}")).to_be_visible()

    def nav(self, name):
        self.page.get_by_role("navigation").get_by_role("link", name=name, exact=True).click()

    def no_plaintext(self, *values):
        html = self.page.content()
        for v in values:
            if v in html:
                raise AssertionError(f"plaintext {v!r} is in the DOM without Reveal")

    def shot(self, name):
        if SHOTS:
            self.page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


def step(name):
    print(f"-- {name}", flush=True)


def run(browser, errors):
    allowed = []
    s = Browser(browser, errors, allowed)
    p = s.page

    step("a service without admin rights sees only the views it may use")
    res = p.goto(BASE + "/ui/")
    headers = res.headers
    assert "default-src 'self'" in headers["content-security-policy"], headers
    assert headers["x-frame-options"] == "DENY", headers
    s.shot("sign-in")
    s.sign_in(VIEWER)
    nav = p.get_by_role("navigation")
    expect(nav.get_by_role("link", name="Secrets")).to_be_visible()
    expect(nav.get_by_role("link", name="Missing")).to_be_visible()
    for hidden in ["Approvals", "Audit", "Keys"]:
        expect(nav.get_by_role("link", name=hidden)).to_have_count(0)
    p.evaluate("location.hash = '#/keys'")  # typed by hand: not shown, not refused either
    expect(p.get_by_role("heading", name="Secrets")).to_be_visible()
    expect(p.get_by_role("button", name="Rotate")).to_have_count(0)
    p.reload()  # a reload signs out: the token lived in memory only
    expect(p.get_by_role("button", name="Sign in")).to_be_visible()

    step("sign in as the operator")
    s.sign_in(ADMIN)
    for view in ["Secrets", "Approvals", "Missing", "Audit", "Keys"]:
        expect(nav.get_by_role("link", name=view)).to_be_visible()

    step("create a secret; the form checks names as the API does")
    p.get_by_role("button", name="New secret").click()
    p.get_by_label("Project").fill(PROJECT)
    p.get_by_label("Path").fill("prod/../x")
    p.get_by_label("Value", exact=True).fill(V1)
    p.get_by_role("button", name="Save").click()
    expect(p.get_by_role("alert")).to_contain_text('must not be empty, "." or ".."')
    p.get_by_label("Path").fill(PATH)
    p.get_by_label("Description").fill("primary database")
    p.get_by_label("Tags").fill("db, prod")
    p.get_by_label("Type").fill("password")
    s.shot("new-secret")
    p.get_by_role("button", name="Save").click()
    expect(p.get_by_role("heading", name=f"{PROJECT} / {PATH}")).to_be_visible()
    expect(p.get_by_text("primary database")).to_be_visible()
    s.no_plaintext(V1)

    step("search by prefix and by substring; page through many secrets")
    for i in range(60):
        status, body = api(ADMIN, "POST", "/api/secrets", {"project": PROJECT, "path": f"bulk/item-{i:03}", "value": f"bulk-{i}"})
        assert status == 201, body
    s.nav("Secrets")
    p.get_by_label("Project").fill(PROJECT)
    p.get_by_role("button", name="Search", exact=True).click()
    expect(p.get_by_role("row")).to_have_count(51)  # header + 50
    p.get_by_role("button", name="Next page").click()
    expect(p.get_by_text("Page 2")).to_be_visible()
    expect(p.get_by_role("link", name=PATH)).to_be_visible()
    p.get_by_label("Search", exact=True).fill("prod/")
    p.get_by_role("button", name="Search", exact=True).click()
    expect(p.get_by_role("row")).to_have_count(2)
    p.get_by_label("Match").select_option("contains")
    p.get_by_label("Search", exact=True).fill("db-pass")
    p.get_by_role("button", name="Search", exact=True).click()
    expect(p.get_by_role("link", name=PATH)).to_be_visible()
    expect(p.get_by_role("row")).to_have_count(2)
    s.no_plaintext(V1)
    s.shot("secrets")
    row = p.get_by_role("row").nth(1)
    row.get_by_role("button", name="Reveal").click()
    expect(row.get_by_text(V1)).to_be_visible()
    row.get_by_role("button", name="Hide").click()
    expect(row.get_by_role("button", name="Reveal")).to_be_visible()
    s.no_plaintext(V1)

    step("reveal performs a read; hide clears the value")
    p.get_by_role("link", name=PATH).click()
    current = p.get_by_role("region", name="Current value")
    s.no_plaintext(V1)
    current.get_by_role("button", name="Reveal").click()
    expect(current.get_by_text(V1)).to_be_visible()
    current.get_by_role("button", name="Hide").click()
    expect(current.get_by_role("button", name="Reveal")).to_be_visible()
    s.no_plaintext(V1)

    step("edit with compare-and-set: a change from a second session wins, the first is told")
    p.get_by_role("button", name="Edit").click()
    p.get_by_label("New value").fill(V2)
    other = Browser(browser, errors, allowed)
    other.sign_in(ADMIN)
    other.page.goto(p.url)
    other.page.get_by_role("button", name="Edit").click()
    other.page.get_by_label("New value").fill(V3)
    expect(other.page.get_by_label("Description")).to_have_value("primary database")
    other.page.get_by_label("Description").fill("primary database, rotated")
    other.page.get_by_role("button", name="Save").click()
    expect(other.page.get_by_text("Saved")).to_be_visible()
    other.context.close()
    allowed.append("status of 409")
    p.get_by_role("button", name="Save").click()
    expect(p.locator("#message")).to_contain_text(f"changed by {ADMIN[0]} at")
    assert "status of 409" not in allowed, "the 409 was logged and expected"
    p.get_by_role("button", name="Reload").click()
    expect(p.get_by_text("primary database, rotated")).to_be_visible()

    step("history, reading an old version, restoring it as a new version")
    history = p.get_by_role("region", name="Version history")
    expect(history.get_by_role("row")).to_have_count(3)
    s.no_plaintext(V1, V3)
    s.shot("secret")
    old = history.locator("tr[data-version='1']")
    old.get_by_role("button", name="Reveal").click()
    expect(old.get_by_text(V1)).to_be_visible()
    old.get_by_role("button", name="Restore").click()
    expect(p.locator("#message")).to_contain_text("Version 1 restored as a new version")
    expect(history.get_by_role("row")).to_have_count(4)
    s.no_plaintext(V1, V3)
    current.get_by_role("button", name="Reveal").click()
    expect(current.get_by_text(V1)).to_be_visible()
    status, body = api(ADMIN, "GET", f"/api/secrets/{PROJECT}/{PATH}")
    assert status == 200 and json.loads(body)["version"] == 3 and V2 not in body, body

    step("delete, then restore within the recovery window")
    p.get_by_role("button", name="Delete").click()
    expect(p.get_by_text("This secret is deleted.")).to_be_visible()
    assert api(ADMIN, "GET", f"/api/secrets/{PROJECT}/{PATH}")[0] == 404
    secret_url = p.url
    s.nav("Secrets")  # away and back: the deleted secret's page still offers Restore
    p.goto(secret_url)
    expect(p.get_by_text("One deleted within the recovery window can be restored.")).to_be_visible()
    p.get_by_role("button", name="Restore").click()
    expect(p.locator("#message")).to_contain_text("Restored")
    expect(p.get_by_role("region", name="Version history").get_by_role("row")).to_have_count(4)

    step("approvals arrive without a reload; approve a token and an access request")
    s.nav("Approvals")
    expect(p.get_by_text("No pending service tokens.")).to_be_visible()
    status, body = api(None, "POST", "/api/service-tokens/register",
                       {"service_name": TOKEN_SERVICE, "service_version": "2.1.0", "token": "t" * 48})
    assert status == 200 and "pending_approval" in body, body
    assert api(READER, "GET", f"/api/secrets/{PROJECT}/{PATH}")[0] == 403
    token_row = p.locator(f"tr[data-service='{TOKEN_SERVICE}']")
    request_row = p.locator(f"tr[data-service='{READER[0]}']")
    expect(token_row).to_contain_text("2.1.0")
    expect(request_row).to_contain_text(f"{PROJECT}/{PATH}")
    s.shot("approvals")
    token_row.get_by_role("button", name="Approve").click()
    expect(p.get_by_text("No pending service tokens.")).to_be_visible()
    request_row.get_by_role("combobox").select_option("3600")
    request_row.get_by_role("button", name="Approve").click()
    expect(p.get_by_text("No pending access requests.")).to_be_visible()
    status, body = api(READER, "GET", f"/api/secrets/{PROJECT}/{PATH}")
    assert status == 200, body
    status, body = api(ADMIN, "GET", "/api/access-requests?status=granted")
    assert json.loads(body)["items"][0].get("expires_at"), body

    step("a missing secret is filled in place")
    assert api(READER, "GET", "/api/secrets/reports/weekly/smtp?description=mail%20relay")[0] == 404
    s.nav("Missing")
    stub = p.locator("tr[data-path='weekly/smtp']")
    expect(stub).to_contain_text(READER[0])
    expect(stub).to_contain_text("mail relay")
    s.shot("missing")
    stub.get_by_label("Value for reports/weekly/smtp").fill("smtp-pw")
    stub.get_by_role("button", name="Save").click()
    expect(p.get_by_text("Filled reports/weekly/smtp.")).to_be_visible()
    expect(stub).to_have_count(0)
    assert api(READER, "GET", "/api/secrets/reports/weekly/smtp")[0] == 200

    step("audit: filter, failures highlighted, CSV export")
    s.nav("Audit")
    p.get_by_label("Path").fill(PATH)
    p.get_by_role("button", name="Filter").click()
    expect(p.locator("tr.failed").first).to_be_visible()
    s.shot("audit")
    p.get_by_label("Outcome").select_option("conflict")
    p.get_by_label("Actor").fill(ADMIN[0])
    p.get_by_label("From", exact=True).fill("2000-01-01T00:00:00")
    p.get_by_label("To", exact=True).fill("2999-01-01T00:00:00")
    p.get_by_role("button", name="Filter").click()
    expect(p.get_by_text(re.compile(r"0 successful, 1 failed"))).to_be_visible()
    expect(p.locator("tbody tr")).to_have_count(1)
    expect(p.locator("tbody tr.failed")).to_contain_text("update")
    with p.expect_download() as dl:
        p.get_by_role("button", name="Export CSV").click()
    csv = open(dl.value.path()).read()
    assert csv.startswith("ts,action,outcome") and "conflict" in csv, csv
    assert V1 not in csv and V3 not in csv

    step("keys: rotate and rewrap with progress")
    s.nav("Keys")
    keys = p.get_by_role("table")
    expect(keys.get_by_role("row")).to_have_count(2)
    p.get_by_role("button", name="Rotate").click()
    expect(keys.get_by_role("row")).to_have_count(3)
    p.get_by_role("button", name="Rewrap").click()
    expect(p.locator("#message")).to_contain_text("Rewrap done")
    s.shot("keys")
    status, body = api(ADMIN, "GET", "/api/sys/keys")
    active = json.loads(body)["active_key_id"]
    for key in json.loads(body)["keys"]:
        assert key["key_id"] == active or key["versions"] == 0, body

    assert not allowed, f"expected console errors that did not happen: {allowed}"
    s.context.close()


def main():
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            run(browser, errors)
        finally:
            browser.close()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    print("console e2e: every step passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
