"""The web view in a real browser: Debian's headless Chromium (driven by Playwright, never a
downloaded browser) opens the page of a live run, ``run_live.py --web``, waits for the first window
and checks the DOM: the stream's tile, the decided label and its top-3, the timeline, the status,
frames arriving. A screenshot of each run is saved under ``build/screenshots/`` for a reviewer
(``docs/web.md`` shows one). Synthetic camera, then a real GIF with MediaPipe.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from live_harness import REPO, Live, endpoint, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CLIPMG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = REPO / "build" / "screenshots"
TOKEN = "browser-test-token-0123456789"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium package (.ci/run does, as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra's playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _url(live: Live) -> str:
    line = wait_for(
        lambda: (
            next((ln for ln in live.stderr.splitlines() if "web view:" in ln), None) or live.proc.poll() is not None
        ),
        240,
        "the web view's address",
    )
    assert isinstance(line, str), live.stderr[-3000:]
    return re.search(r"http://\S+", line).group(0)  # type: ignore[union-attr]


def _watch(browser: Any, url: str, stream: str, shot: str, windows: int = 2) -> Any:
    """Open ``url``, wait for ``windows`` timeline entries and two frames of ``stream``; returns the page."""
    page = browser.new_page(viewport={"width": 1100, "height": 620})
    errors: List[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    tile = f'.tile[data-stream="{stream}"]'
    page.wait_for_selector(f"{tile} .timeline li:nth-child({windows})", timeout=240_000)
    page.wait_for_function(
        f"""() => {{ const i = document.querySelector('{tile} .frame');
                    return i && Number(i.dataset.frames || 0) >= 2 && i.complete && i.naturalWidth > 0; }}""",
        timeout=120_000,
    )
    page.wait_for_selector(f"{tile} .status dd", timeout=60_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / shot))
    assert not errors, errors
    return page


def test_the_page_of_a_live_synthetic_run(browser: Any, tmp_path: Path) -> None:
    video = tmp_path / "annotated.mp4"
    args = ["--endpoint", endpoint(), "--web", "0", "--web-token-env", "CLIPMG_TEST_TOKEN", "--record", str(video)]
    with Live([*args, "--no-listen", "--duration", "0"], env={"CLIPMG_TEST_TOKEN": TOKEN}) as live:
        url = _url(live)
        assert TOKEN not in live.stderr and "token=***" in url  # printed redacted, like every other secret
        page = _watch(browser, url.replace("***", TOKEN), "cam0", "web-synthetic.png")
        assert "token" not in page.url  # swapped for an HttpOnly cookie
        tile = page.locator('.tile[data-stream="cam0"]')
        assert tile.locator(".name").inner_text() == "cam0"
        label = tile.locator(".decided .label").inner_text()
        entries = tile.locator(".timeline li")
        assert entries.count() >= 2
        first = entries.first.inner_text()
        assert re.match(r"#\d+\s+\S.*\s+[01]\.\d\d$", first.replace("\n", " ")), first
        assert label == "–" or label in page.inner_text("body")
        assert len(tile.locator(".top li").all()) == 3
        status = tile.locator(".status").inner_text()
        for word in ("fps in / pose / out", "latency", "skipped", "restarts", "synthetic"):
            assert word in status, status
        link = tile.locator("a.recording")
        wait_for(lambda: link.is_visible(), 30, "the recording link")
        assert link.get_attribute("href") == "/api/streams/cam0/recording"
        page.close()
        live.signal(signal.SIGINT)
        assert live.wait(120) == 0, live.stderr[-3000:]
    assert video.is_file() and video.stat().st_size > 0


def test_the_page_of_a_real_gif_with_mediapipe(browser: Any, shared_data: Path) -> None:
    gif = shared_data / "imigue-clips" / "folding-arms.gif"
    if not gif.is_file():
        pytest.skip(f"the real clips are not at {gif.parent}")
    pytest.importorskip("mediapipe")
    args = ["--source", str(gif), "--source-option", "loop=true", "--pose", "mediapipe", "--stream-id", "gif"]
    with Live([*args, "--endpoint", endpoint(), "--web", "0", "--no-record", "--no-listen", "--duration", "0"]) as live:
        page = _watch(browser, _url(live), "gif", "web-mediapipe.png", windows=1)
        tile = page.locator('.tile[data-stream="gif"]')
        assert tile.locator(".timeline li").count() >= 1 and len(tile.locator(".top li").all()) == 3
        assert "folding-arms.gif" in tile.locator(".status").inner_text()
        page.close()
        live.signal(signal.SIGINT)
        assert live.wait(120) == 0, live.stderr[-3000:]
