"""A screenshot of the demo page of ``python -m hybridrec.serve``, taken in headless Chromium.

    python -m benchmarks.serve_demo --run runs/hybrid-ml-100k-random --user 196

It serves a copy of the run on 127.0.0.1, opens ``/``, asks for ``--user``'s top-10, clicks the
first item (the user chose it: the list is asked again, new entries highlighted) and saves
the page to ``benchmarks/results/serving/http/demo.png`` (``--out``). Needs ``selenium`` and
Debian's ``chromium`` and ``chromium-driver``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.serve_load import RESULTS, free_port, start_server, stop_server


def screenshot(run: Path, user: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1000,1010", "--hide-scrollbars"):
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copytree(run, Path(tmp) / run.name,
                                    ignore=shutil.ignore_patterns("journal.jsonl")))
        port = free_port()
        server = start_server(copy, port)
        browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")),
                                   options=options)
        try:
            wait = WebDriverWait(browser, 60)
            browser.get(f"http://127.0.0.1:{port}/")
            field = browser.find_element(By.ID, "user")
            field.clear()
            field.send_keys(user)
            browser.find_element(By.ID, "user-go").click()
            wait.until(lambda _: f"user {user}." in browser.find_element(By.ID, "status").text)
            browser.find_elements(By.CSS_SELECTOR, "#results li.item")[0].click()
            wait.until(lambda _: "Recorded" in browser.find_element(By.ID, "status").text)
            out.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(out))
        finally:
            browser.quit()
            stop_server(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a trained run folder")
    parser.add_argument("--user", default="196", help="the user to show (default: 196)")
    parser.add_argument("--out", type=Path, default=RESULTS / "demo.png")
    args = parser.parse_args(argv)
    screenshot(args.run, args.user, args.out)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
