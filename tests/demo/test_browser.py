"""The page in a real browser: headless Chromium opens /?example=1, whose script fetches the example image and sends
it through the same submitImage() path as an upload; the DOM it dumps must hold the top-5 rows and four PNGs.

Needs a Chromium binary (Debian: `apt-get install -y --no-install-recommends chromium`); skipped where none is found.
litvit.viz is stood in for (tests/demo/conftest.py): this tests the page, test_app.py the real pictures."""

import os
import re
import shutil
import subprocess
import threading

import pytest

from litvit.demo.app import RANDOM_NOTE, class_names
from litvit.demo.server import serve

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome-headless-shell")
BROWSER = os.environ.get("LITVIT_CHROMIUM") or next((b for b in map(shutil.which, BROWSERS) if b), None)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium binary found (apt-get install -y chromium)")
def test_headless_chromium_sends_the_example_and_shows_the_results(nano, fake_viz, tmp_path):
    started = threading.Event()
    box = {}

    def ready(srv):
        box["srv"] = srv
        started.set()

    options = dict(host="127.0.0.1", port=0, model_name="litv2_nano", note=RANDOM_NOTE, ready=ready)
    thread = threading.Thread(target=serve, args=(nano, class_names(nano)), kwargs=options, daemon=True)
    thread.start()
    assert started.wait(30)
    host, port = box["srv"].server_address[:2]
    cmd = [
        BROWSER,
        "--headless",
        "--no-sandbox",  # root in a container has no user namespaces for the sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=20000",
        "--dump-dom",
        f"http://{host}:{port}/?example=1",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    finally:
        box["srv"].shutdown()
        thread.join(10)
    dom = done.stdout
    assert 'data-state="done"' in dom, (done.returncode, dom[-2000:], done.stderr[-2000:])
    assert len(re.findall(r'<tr class="top5-row">', dom)) == 5
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,[A-Za-z0-9+/=]{40,}"', dom)) == 4
    assert "random weights" in dom and '<p class="error">' not in dom
