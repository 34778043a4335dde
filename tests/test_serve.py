"""HTTP serving on the tiny example run: every endpoint through TestClient, every bad-request
class (a 4xx naming the field, nothing changed), live updates, the journal (torn lines, another
state of the folder, a failed write), a real server process killed with SIGKILL after
acknowledged updates, concurrent readers and writers, and the demo page in headless Chromium.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from hybridrec.serve import create_app  # noqa: E402
from hybridrec.serve.__main__ import main as serve_main  # noqa: E402
from hybridrec.serve.journal import NAME, Journal, JournalError  # noqa: E402
from hybridrec.testing import MANN, THIEF  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

NEW_ITEMS = {"items": [THIEF], "triples": [["http://example.org/kg/thief", "schema:director",
                                            MANN]]}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(example_run, tmp_path):
    """A copy of the example run: updates write a journal into it."""
    return Path(shutil.copytree(example_run, tmp_path / "run"))


@pytest.fixture
def client(run):
    with TestClient(create_app(run, shared=False, warm=False)) as c:
        yield c


def state(client) -> dict:
    """What a request could change: sizes, two users' full lists, the journal's bytes."""
    health = client.get("/health").json()
    lists = {u: client.get("/recommend", params={"user": u, "k": 100}).json()
             for u in ("u01", "u02")}
    journal = Path(health["run"]) / NAME
    return {"users": health["users"], "items": health["items"], "lists": lists,
            "journal": journal.read_bytes() if journal.exists() else b""}


# ---------------------------------------------------------------------------- endpoints
def test_every_read_endpoint(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and (health["users"], health["items"]) == (10, 13)
    ranked = client.get("/recommend", params={"user": "u01", "k": 3, "explain": "true"}).json()
    assert ranked["user_id"] == "u01" and ranked["source"] == "model"
    assert len(ranked["items"]) == 3 and ranked["items"][0]["title"]
    why = ranked["items"][0]["explanation"]
    assert set(why["shares"]) == {"gnn", "als", "lightgcn"} and why["sentence"]
    assert why["item_id"] == ranked["items"][0]["item_id"]
    popular = client.get("/recommend", params={"user": "stranger", "fallback": "true"}).json()
    assert popular["source"] == "popular" and len(popular["items"]) == 10
    by_history = client.post("/recommend", json={"history": ["m01", "m02"], "k": 4}).json()
    assert by_history["source"] == "history" and len(by_history["items"]) == 4
    assert not {"m01", "m02"} & {e["item_id"] for e in by_history["items"]}
    by_text = client.post("/recommend", json={"text": "a mafia film about crime families",
                                              "k": 3}).json()
    assert by_text["source"] == "text" and len(by_text["items"]) == 3
    similar = client.get("/similar", params={"item": "m01", "k": 2}).json()
    assert len(similar["items"]) == 2 and "m01" not in {e["item_id"] for e in similar["items"]}
    explained = client.get("/explain", params={"user": "u01", "item": "m05"}).json()
    assert explained["user_id"] == "u01" and explained["kg_paths"] is not None
    assert {"score", "shares", "gate", "similar_history", "sentence"} <= set(explained)
    page = client.get("/")
    assert page.status_code == 200 and '"users": ["u01"' in page.text
    assert client.get("/docs").status_code == 200
    assert "/recommend" in client.get("/openapi.json").json()["paths"]


def test_metrics_count_requests_and_latencies_per_endpoint(client):
    client.get("/recommend", params={"user": "u01"})
    client.get("/recommend", params={"user": "nobody"})
    client.get("/no-such-path")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'hybridrec_http_requests_total{method="GET",endpoint="/recommend",status="200"} 1' \
        in text
    assert 'hybridrec_http_requests_total{method="GET",endpoint="/recommend",status="404"} 1' \
        in text
    assert 'endpoint="other",status="404"} 1' in text  # no label per random path
    bucket = 'hybridrec_http_request_duration_seconds_bucket{method="GET",' \
             'endpoint="/recommend",le="+Inf"} 2'
    assert bucket in text
    assert "# TYPE hybridrec_http_request_duration_seconds histogram" in text
    assert "hybridrec_items 13" in text


# ---------------------------------------------------------------------------- bad requests
JSON = {"content-type": "application/json"}
BAD = [  # (method, path, request keywords, status, field)
    ("GET", "/recommend", {"params": {"user": "nobody"}}, 404, "user"),
    ("GET", "/recommend", {"params": {}}, 422, "user"),
    ("GET", "/recommend", {"params": {"user": "u01", "k": 0}}, 422, "k"),
    ("GET", "/recommend", {"params": {"user": "u01", "k": 101}}, 422, "k"),
    ("GET", "/recommend", {"params": {"user": "u01", "k": "ten"}}, 422, "k"),
    ("GET", "/recommend", {"params": {"user": "u01", "explain": "maybe"}}, 422, "explain"),
    ("GET", "/similar", {"params": {"item": "zz"}}, 404, "item"),
    ("GET", "/explain", {"params": {"user": "u01", "item": "zz"}}, 404, "item"),
    ("GET", "/explain", {"params": {"user": "zz", "item": "m01"}}, 404, "user"),
    ("POST", "/recommend", {"content": b'{"history": ["m01", ', "headers": JSON}, 400, "body"),
    ("POST", "/recommend", {"content": b"[" * 50_000 + b"]" * 50_000, "headers": JSON}, 400,
     "body"),
    ("POST", "/recommend", {"content": b'{"text": "\xff"}', "headers": JSON}, 400, "body"),
    ("POST", "/recommend", {"content": b"m01,m02", "headers": {"content-type": "text/csv"}},
     415, "Content-Type"),
    ("POST", "/recommend", {"content": json.dumps({"text": "x" * (1 << 20)}).encode(),
                            "headers": JSON}, 413, "body"),
    ("POST", "/recommend", {"json": {"history": [1, 2]}}, 422, "history[0]"),
    ("POST", "/recommend", {"json": {"history": ["m01"], "k": "3"}}, 422, "k"),
    ("POST", "/recommend", {"json": {"history": ["m01"], "colour": "red"}}, 422, "colour"),
    ("POST", "/recommend", {"json": {"history": ["m01", "zz"]}}, 404, "history[1]"),
    ("POST", "/recommend", {"json": {"history": ["m01"], "text": "crime"}}, 422, "history"),
    ("POST", "/recommend", {"json": {"text": "   "}}, 422, "text"),
    ("POST", "/recommend", {"json": ["m01"]}, 422, "body"),
    ("POST", "/interactions", {"json": {"interactions": [{"user_id": "u01", "item_id": "zz"}]}},
     404, "interactions[0].item_id"),
    ("POST", "/interactions", {"json": {"interactions": [{"user_id": 1, "item_id": "m01"}]}},
     422, "interactions[0].user_id"),
    ("POST", "/interactions", {"json": {"interactions": []}}, 422, "interactions"),
    ("POST", "/items", {"json": {"items": [THIEF], "triples": [
        ["http://example.org/kg/nowhere", "schema:director", MANN]]}}, 422, "triples[0]"),
    ("POST", "/items", {"json": {"items": [THIEF], "triples": [
        ["http://example.org/kg/thief", "schema:composer", MANN]]}}, 422, "triples[0]"),
    ("POST", "/items", {"json": {"items": [THIEF], "triples": [["only", "two"]]}}, 422,
     "triples[0]"),
    ("POST", "/items", {"json": {"items": [{"item_id": "m15", "title": "X"}]}}, 422,
     "items[0].year"),
    ("POST", "/items", {"json": {"items": [{**THIEF, "item_id": "m01"}]}}, 422,
     "items[0].item_id"),
    ("POST", "/items", {"json": {"items": [{**THIEF, "year": 1981}]}}, 422, "items[0].year"),
    ("GET", "/no-such-path", {}, 404, "path"),
    ("DELETE", "/recommend", {}, 405, "path"),
]


def test_bad_requests_get_a_4xx_naming_the_field_and_change_nothing(client):
    before = state(client)
    for method, path, kwargs, status, field in BAD:
        response = client.request(method, path, **kwargs)
        body = response.json()
        case = f"{method} {path} {kwargs}"[:120]
        assert response.status_code == status, (case, body)
        assert body["field"] == field, (case, body)
        assert "\n" not in body["error"] and body["error"], case
        assert state(client) == before, case


def test_a_declared_oversized_body_is_refused_before_it_is_read(run):
    """The limit is an option; a Content-Length over it is answered at once."""
    with TestClient(create_app(run, shared=False, warm=False, max_body=100)) as small:
        response = small.post("/interactions", json={"interactions": [
            {"user_id": f"user-{n}", "item_id": "m01"} for n in range(10)]})
        assert response.status_code == 413
        assert response.json() == {"error": "body: at most 100 bytes", "field": "body"}
        assert small.get("/health").json()["users"] == 10


# ---------------------------------------------------------------------------- live updates
def test_a_new_item_is_served_at_once_and_journaled(client, run):
    added = client.post("/items", json=NEW_ITEMS)
    assert added.status_code == 200, added.text
    assert added.json()["added"] == ["m14"] and added.json()["edges"] >= 3
    ranked = client.get("/recommend", params={"user": "u01", "k": 14}).json()
    assert "m14" in {e["item_id"] for e in ranked["items"]}
    assert client.get("/similar", params={"item": "m14", "k": 3}).status_code == 200
    why = client.get("/explain", params={"user": "u01", "item": "m14"}).json()
    assert any("Michael Mann" in p["text"] for p in why["kg_paths"])
    lines = (run / NAME).read_text().splitlines()
    assert json.loads(lines[1])["op"] == "items" and len(lines) == 2
    # The same item again: refused, the journal untouched.
    again = client.post("/items", json=NEW_ITEMS)
    assert again.status_code == 422 and again.json()["field"] == "items[0].item_id"
    assert len((run / NAME).read_text().splitlines()) == 2


def test_interactions_change_the_lists_and_make_new_users(client):
    top = client.get("/recommend", params={"user": "u01", "k": 1}).json()["items"][0]
    response = client.post("/interactions", json={"interactions": [
        {"user_id": "u01", "item_id": top["item_id"]},
        {"user_id": "visitor", "item_id": "m01"}]})
    assert response.status_code == 200 and response.json()["users"] == ["u01", "visitor"]
    after = client.get("/recommend", params={"user": "u01", "k": 13}).json()
    assert top["item_id"] not in {e["item_id"] for e in after["items"]}  # seen now
    visitor = client.get("/recommend", params={"user": "visitor", "k": 5,
                                               "explain": "true"}).json()
    assert visitor["source"] == "model" and "m01" not in {e["item_id"]
                                                        for e in visitor["items"]}
    assert client.get("/health").json()["users"] == 11


def test_the_journal_is_replayed_by_the_next_server(run):
    with TestClient(create_app(run, shared=False, warm=False)) as first:
        assert first.post("/items", json=NEW_ITEMS).status_code == 200
        assert first.post("/interactions", json={"interactions": [
            {"user_id": "u02", "item_id": "m14"}]}).status_code == 200
        expected = state(first)
    with TestClient(create_app(run, shared=False, warm=False)) as second:
        assert state(second) == expected
        assert second.get("/health").json()["journal_updates"] == 2


def test_compact_folds_the_journal_into_the_run_folder(run):
    with TestClient(create_app(run, shared=False, warm=False)) as first:
        assert first.post("/items", json=NEW_ITEMS).status_code == 200
        expected = state(first)
    assert serve_main([str(run), "--compact"]) == 0
    assert not (run / NAME).exists() and (run / "updates.json").exists()
    with TestClient(create_app(run, shared=False, warm=False)) as second:
        assert {**state(second), "journal": b""} == {**expected, "journal": b""}


def test_an_update_that_cannot_be_written_changes_nothing(client, run):
    assert client.post("/items", json=NEW_ITEMS).status_code == 200
    (run / NAME).unlink()  # the journal is gone: the next update cannot be made durable
    response = client.post("/interactions", json={"interactions": [
        {"user_id": "u02", "item_id": "m01"}]})
    assert response.status_code == 503 and "not saved" in response.json()["error"]
    # Back to what the disk holds: the run folder, no journal, so no m14 either.
    health = client.get("/health").json()
    assert (health["items"], health["journal_updates"]) == (13, 0)
    assert client.post("/items", json=NEW_ITEMS).status_code == 200  # a fresh journal


def test_journal_torn_tail_and_another_state_of_the_folder(run):
    journal = Journal(run)
    with journal.locked(exclusive=True):
        journal.read_new()
        journal.append({"op": "interactions", "pairs": [["u01", "m13"]]})
    journal.close()
    with open(run / NAME, "ab") as f:
        f.write(b'{"op": "interactions", "pa')  # a writer killed mid-line
    again = Journal(run)
    with again.locked(exclusive=True):
        assert [e["op"] for e in again.read_new()] == ["interactions"]
        again.append({"op": "interactions", "pairs": [["u02", "m13"]]})  # cuts the torn line
    again.close()
    lines = (run / NAME).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    (run / "run.json").write_text((run / "run.json").read_text().replace("{", '{"x": 1, ', 1))
    with pytest.raises(JournalError, match="another state of the run folder"):
        Journal(run)


def test_the_command_line_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="not a run folder"):
        serve_main([str(tmp_path)])


# ---------------------------------------------------------------------------- a real server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(run: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                        os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, "-m", "hybridrec.serve", str(run),
                               "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read().decode()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.3)
    os.killpg(server.pid, signal.SIGKILL)
    raise AssertionError("the server did not start in 120 s")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()
    server.stdout.close()


@pytest.fixture
def server(run):
    pytest.importorskip("uvicorn")
    port = _free_port()
    process = _start(run, port)
    yield f"http://127.0.0.1:{port}", process, run
    _stop(process)


def test_kill_9_after_acknowledged_updates_loses_nothing(server):
    url, process, run = server
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/items", json=NEW_ITEMS).status_code == 200
        assert http.post("/interactions", json={"interactions": [
            {"user_id": "u02", "item_id": "m14"}, {"user_id": "late", "item_id": "m14"}]}
        ).status_code == 200
        before = {u: http.get("/recommend", params={"user": u, "k": 14}).json()
                  for u in ("u01", "u02", "late")}
    os.kill(process.pid, signal.SIGKILL)  # no shutdown, no flush: only what is on disk
    process.wait()
    port = _free_port()
    restarted = _start(run, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            health = http.get("/health").json()
            assert (health["items"], health["users"], health["journal_updates"]) == (14, 11, 2)
            after = {u: http.get("/recommend", params={"user": u, "k": 14}).json()
                     for u in ("u01", "u02", "late")}
            assert after == before
            assert "m14" not in {e["item_id"] for e in after["u02"]["items"]}  # seen
    finally:
        _stop(restarted)


def test_concurrent_readers_and_writers(server):
    """Readers ask for users that a writer keeps adding: a user whose update was
    acknowledged is served (200), one not yet added is a 404, nothing is a 500, and each list
    is well formed."""
    url, _, _ = server
    added: list[str] = []
    failures: list[str] = []
    done = threading.Event()

    def write() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for n in range(40):
                r = http.post("/interactions", json={"interactions": [
                    {"user_id": f"c{n}", "item_id": f"m{1 + n % 13:02d}"},
                    {"user_id": "u01", "item_id": f"m{1 + n % 13:02d}"}]})
                if r.status_code != 200:
                    failures.append(f"write {r.status_code} {r.text}")
                added.append(f"c{n}")
        done.set()

    def read(seed: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            n = seed
            while not done.is_set():
                n += 1
                acknowledged = set(added)
                user = added[n % len(added)] if added and n % 2 else f"c{n % 45}"
                r = http.get("/recommend", params={"user": user, "k": 13,
                                                   "explain": str(n % 5 == 0).lower()})
                if r.status_code not in (200, 404) or (user in acknowledged
                                                       and r.status_code != 200):
                    failures.append(f"read {user} {r.status_code} {r.text}")
                elif r.status_code == 200:
                    scores = [e["score"] for e in r.json()["items"]]
                    if scores != sorted(scores, reverse=True):
                        failures.append(f"unsorted {scores}")

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read, args=(s,))
                                                  for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures[:3]
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/health").json()["users"] == 50
        assert all(http.get("/recommend", params={"user": u}).status_code == 200 for u in added)


# ---------------------------------------------------------------------------- the demo page
@pytest.fixture
def browser():
    """Headless Chromium through Selenium (before the server: a skip costs nothing)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                   if shutil.which(b)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no headless Chromium and chromedriver installed")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1100,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def test_demo_page_in_headless_chromium(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = server
    wait = WebDriverWait(browser, 30)
    browser.get(url + "/")
    rows = lambda: browser.find_elements(By.CSS_SELECTOR, "#results li.item")  # noqa: E731
    wait.until(lambda _: rows())
    first = [r.get_attribute("data-item") for r in rows()]
    assert browser.find_element(By.ID, "user").get_attribute("value") == "u01"
    assert "graph & text" in rows()[0].text and rows()[0].find_element(
        By.CSS_SELECTOR, ".reason").text
    # Clicking an item records it and asks again: the item leaves the list (seen).
    rows()[0].click()
    wait.until(lambda _: "Recorded" in browser.find_element(By.ID, "status").text)
    second = [r.get_attribute("data-item") for r in rows()]
    assert first[0] not in second
    browser.save_screenshot(str(tmp_path / "demo.png"))
    # A sentence ranks by text; a click there makes the visitor a user.
    browser.find_element(By.ID, "text").send_keys("a mafia film about crime families")
    browser.find_element(By.ID, "text-go").click()
    wait.until(lambda _: "your words" in browser.find_element(By.ID, "status").text)
    assert rows() and "graph & text 100%" in rows()[0].text
    rows()[0].click()
    wait.until(lambda _: browser.find_element(By.ID, "user").get_attribute(
        "value").startswith("visitor-"))
    assert (tmp_path / "demo.png").stat().st_size > 10_000
