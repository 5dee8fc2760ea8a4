"""The tune report: rendering from a saved record, ``perfpilot report``, and the page in a
real headless Chromium (no console errors, no network, headline and plots on screen).

The record in ``fixtures/tune_record.json`` comes from a real tiny tune
(``perfpilot tune tests/fixtures/tune_tiny.py:slow_data --budget 90s``).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from perfpilot.cli import main
from perfpilot.render.tune_html import report_page
from perfpilot.tune_record import TuneRecord

RECORD = Path(__file__).parent / "fixtures" / "tune_record.json"
CHROMIUM = os.environ.get("PERFPILOT_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture()
def tune_dir(tmp_path: Path) -> Path:
    shutil.copy(RECORD, tmp_path / "record.json")
    return tmp_path


def test_page_is_self_contained_and_has_every_section(tune_dir: Path) -> None:
    html = report_page(TuneRecord.load(tune_dir / "record.json"))
    for anchor in ("headline", "before-after", "steps", "stage-loader", "rejected", "trials",
                   "machine"):
        assert f'id="{anchor}"' in html
    assert html.count("<svg") >= 4
    lowered = html.lower().replace(" ", "")
    # Nothing is loaded: no scripts, links, remote sources or CSS imports (SVG metadata
    # names namespaces with http URLs; those are identifiers, not requests).
    for needle in ("<script", "<link", 'src="http', "href=\"http", "url(http", "@import",
                   "<iframe", "<img"):
        assert needle not in lowered, needle


def test_report_command_rerenders_and_writes_the_record_with_trials(
        tune_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tune_dir), "--json", str(tune_dir / "copy.json")]) == 0
    printed = capsys.readouterr().out
    assert "report.html" in printed
    original = json.loads(RECORD.read_text())
    copy = json.loads((tune_dir / "copy.json").read_text())
    assert copy["trials"] == original["trials"] and copy["trials"]
    assert all({"number", "state", "reason", "stage"} <= set(t) for t in copy["trials"])
    assert (tune_dir / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(tune_dir), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == "perfpilot.tunerecord/2"


def test_report_of_an_interrupted_tuning_says_so(tune_dir: Path) -> None:
    rec = json.loads(RECORD.read_text())
    rec.update(status="running", final=None, decision=None, tuned=None)
    (tune_dir / "record.json").write_text(json.dumps(rec))
    assert main(["report", str(tune_dir)]) == 0
    html = (tune_dir / "report.html").read_text()
    assert "This tuning did not finish" in html and "--resume" in html


def test_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no tuning" in capsys.readouterr().err
    (tmp_path / "record.json").write_text('{"schema": "perfpilot.runrecord/1"}')
    assert main(["report", str(tmp_path)]) == 2
    assert "not a perfpilot tune record" in capsys.readouterr().err


# ---------------------------------------------------------------- a real browser


class DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fds 3 and 4, JSON
    messages ending in NUL): no websocket library, no port."""

    def __init__(self, user_dir: Path) -> None:
        cmd_r, self.cmd_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                f"--user-data-dir={user_dir}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{cmd_r} 4>&{resp_w}', *args],
            pass_fds=(cmd_r, resp_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(resp_w)
        self.events: list[dict[str, Any]] = []
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while chunk := os.read(self.resp_r, 65536):
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                (self.replies.put if "id" in msg else self.events.append)(msg)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self.replies.get(timeout=30)
            if reply["id"] == self.next_id:
                assert "error" not in reply, reply
                return reply.get("result", {})

    def wait_event(self, method: str, timeout: float = 30) -> None:
        end = time.time() + timeout
        while not any(e.get("method") == method for e in self.events):
            assert time.time() < end, f"no {method} within {timeout} s"
            time.sleep(0.05)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _chromium_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing on CI (install Debian's chromium)")
        pytest.skip(f"{CHROMIUM} not installed")


def load_in_chromium(page: Path, user_dir: Path) -> dict[str, Any]:
    """Load ``page``; return its console errors, network requests and what is on screen."""
    dt = DevTools(user_dir)
    try:
        target = dt.call("Target.createTarget", url="about:blank")["targetId"]
        session = dt.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            dt.call(f"{domain}.enable", session)
        dt.call("Emulation.setDeviceMetricsOverride", session, width=1200, height=900,
                deviceScaleFactor=1, mobile=False)
        dt.call("Page.navigate", session, url=page.resolve().as_uri())
        dt.wait_event("Page.loadEventFired")
        probe = dt.call("Runtime.evaluate", session, returnByValue=True, expression="""({
            headline: document.querySelector('#headline .tile .big')?.innerText || '',
            title: document.title,
            plots: [...document.querySelectorAll('.plot svg')].map(s => {
                const r = s.getBoundingClientRect();
                return {w: r.width, h: r.height, marks: s.querySelectorAll('path, use').length};
            }),
        })""")["result"]["value"]
        shot = dt.call("Page.captureScreenshot", session, format="png")["data"]
        errors = [e for e in dt.events if
                  (e.get("method") == "Runtime.consoleAPICalled"
                   and e["params"]["type"] in ("error", "assert"))
                  or e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Log.entryAdded"
                      and e["params"]["entry"]["level"] == "error")]
        requests = [e["params"]["request"]["url"] for e in dt.events
                    if e.get("method") == "Network.requestWillBeSent"]
        return {"errors": errors, "requests": requests, "screenshot": base64.b64decode(shot),
                **probe}
    finally:
        dt.close()


def test_report_loads_in_headless_chromium_without_errors(tune_dir: Path,
                                                          tmp_path: Path) -> None:
    _chromium_or_skip()
    assert main(["report", str(tune_dir)]) == 0
    seen = load_in_chromium(tune_dir / "report.html", tmp_path / "chromium-profile")
    assert seen["errors"] == []
    assert all(u.startswith(("file:", "data:")) for u in seen["requests"]), seen["requests"]
    assert "×" in seen["headline"] and seen["title"].startswith("perfpilot tune:")
    drawn = [p for p in seen["plots"] if p["w"] > 150 and p["h"] > 80 and p["marks"] > 5]
    assert len(drawn) >= 4, seen["plots"]
    assert seen["screenshot"][:8] == b"\x89PNG\r\n\x1a\n" and len(seen["screenshot"]) > 20000


def test_a_tuning_killed_before_its_first_record_is_reported_from_its_study(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from perfpilot.trial import Outcome
    from perfpilot.tune.study import Study

    study = Study(tmp_path, fingerprint={"workload": "tiny", "budget_s": 60.0}, resume=False)
    study.run("baseline", {"check": "run"}, lambda: Outcome("nan", reason="loss is nan"))
    assert main(["report", str(tmp_path), "--json", "-"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["status"] == "running" and rec["workload"]["name"] == "tiny"
    assert [(t["state"], t["reason"]) for t in rec["trials"]] == [("nan", "loss is nan")]
    html = (tmp_path / "report.html").read_text()
    assert "stopped before it wrote its record" in html and "loss is nan" in html
