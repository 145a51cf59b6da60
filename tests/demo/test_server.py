"""litvit.demo.server on 127.0.0.1 (a free port, a thread): the page, uploads, errors, the size bound; and the
`litvit demo` command itself, stopped with Ctrl-C."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from litvit.cli import main
from litvit.demo.app import RANDOM_NOTE, class_names
from litvit.demo.server import serve

from .conftest import png_bytes


@pytest.fixture
def server(nano, fake_viz):
    """A running demo server (1 MB upload limit); yields its base URL and shuts it down within seconds."""
    started = threading.Event()
    box = {}

    def ready(srv):
        box["srv"] = srv
        started.set()

    thread = threading.Thread(
        target=serve,
        args=(nano, class_names(nano)),
        kwargs=dict(host="127.0.0.1", port=0, model_name="litv2_nano", note=RANDOM_NOTE, max_bytes=2**20, ready=ready),
        daemon=True,
    )
    thread.start()
    assert started.wait(30)
    host, port = box["srv"].server_address[:2]
    yield f"http://{host}:{port}"
    box["srv"].shutdown()
    thread.join(10)
    assert not thread.is_alive()


def _post(url, data):
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_page_example_and_predict(server):
    with urllib.request.urlopen(server + "/", timeout=10) as r:
        page = r.read().decode()
    assert r.headers["Content-Type"].startswith("text/html")
    assert "litv2_nano" in page and RANDOM_NOTE in page and "__MAX_BYTES__" not in page
    with urllib.request.urlopen(server + "/example.png", timeout=10) as r:
        example = r.read()
    assert example.startswith(b"\x89PNG")
    for data in (png_bytes(), example):
        status, out = _post(server + "/api/predict", data)
        assert status == 200 and len(out["top5"]) == 5 and [bool(p["png"]) for p in out["pictures"]] == [True] * 4


def test_errors_are_json_answers_and_the_server_goes_on(server):
    status, out = _post(server + "/api/predict", b"GIF89a but not really")
    assert status == 400 and "not an image" in out["error"]
    status, out = _post(server + "/nowhere", b"x")
    assert status == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "/nowhere", timeout=10)
    assert e.value.code == 404
    # an upload over the limit is refused from its Content-Length, without reading it
    conn = http.client.HTTPConnection(server.split("//")[1], timeout=10)
    conn.putrequest("POST", "/api/predict")
    conn.putheader("Content-Length", str(50 * 2**20))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and "over the 1 MB limit" in json.loads(resp.read())["error"]
    conn.close()
    status, out = _post(server + "/api/predict", png_bytes(seed=1))
    assert status == 200


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_and_stops_cleanly_on_ctrl_c():
    port = _free_port()
    env = dict(os.environ, MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "litvit.cli", "demo", "--model", "litv2_nano", "--port", str(port)]
    # SIGINT back to its default in the child: a pytest started as a background job (`cmd &` in a script) has it
    # ignored, the child would inherit that, and Python then installs no KeyboardInterrupt handler.
    reset = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=reset)
    try:
        line = proc.stdout.readline()  # printed once the socket listens
        assert f"http://127.0.0.1:{port}/" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err and "random weights" in err


def test_cli_port_in_use_is_one_clear_line(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["demo", "--model", "litv2_nano", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "another --port" in err
