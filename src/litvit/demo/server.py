"""The demo's web server: Python's own http.server, so the demo needs nothing beyond litvit's dependencies (a
gradio-style app would pull hundreds of MB into CI for one page).

One request at a time (HTTPServer, not the threading one): the model runs one image at a time anyway and Grad-CAM
is not safe to run twice at once on one model. Routes: GET / (the page), GET /example.png (the built-in example
image, the page's "try the example" button and its ?example=1 test hook), POST /api/predict (the image bytes as the
body; JSON back). Uploads are bounded (`max_bytes`) and a client that stalls is dropped after `timeout` seconds.
"""

import html
import io
import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from typing import Any, Callable, Dict, Optional, Sequence

from torch import nn

from .app import render_upload

__all__ = ["DEFAULT_MAX_BYTES", "example_png", "make_server", "serve"]

DEFAULT_MAX_BYTES = 20 * 1024 * 1024


def example_png() -> bytes:
    """A built-in example photo: scikit-learn's bundled china.jpg when installed, else a drawn landscape."""
    from PIL import Image, ImageDraw

    try:
        from sklearn.datasets import load_sample_image

        img = Image.fromarray(load_sample_image("china.jpg"))
    except Exception:  # scikit-learn is optional ([train] extra)
        img = Image.new("RGB", (320, 240), (110, 170, 230))
        draw = ImageDraw.Draw(img)
        draw.rectangle((0, 160, 320, 240), fill=(70, 140, 60))
        draw.ellipse((230, 30, 290, 90), fill=(250, 220, 80))
        draw.polygon([(40, 160), (110, 70), (180, 160)], fill=(120, 100, 90))
        draw.rectangle((200, 120, 260, 175), fill=(180, 40, 40))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _page(model_name: str, note: str, max_bytes: int) -> bytes:
    text = resources.files("litvit.demo").joinpath("page.html").read_text(encoding="utf-8")
    for key, value in (("__MODEL__", model_name), ("__NOTE__", note), ("__MAX_BYTES__", str(max_bytes))):
        text = text.replace(key, html.escape(value))
    return text.encode("utf-8")


def _handler(
    model: nn.Module, labels: Sequence[str], page: bytes, example: bytes, max_bytes: int, timeout: float
) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "litvit-demo"

        def log_message(self, format: str, *args: Any) -> None:  # one short line per request, on stderr
            sys.stderr.write(f"litvit demo: {self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Dict[str, Any]) -> None:
            self._send(status, json.dumps(obj).encode("utf-8"), "application/json")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif path == "/example.png":
                self._send(HTTPStatus.OK, example, "image/png")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}: open /"})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/api/predict":
                self._json(HTTPStatus.NOT_FOUND, {"error": "POST the image to /api/predict"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.close_connection = True
                self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "send the image with a Content-Length"})
                return
            if length > max_bytes:
                self.close_connection = True  # the body is not read: drop the connection after answering
                mb = max_bytes / 2**20
                self._json(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    {"error": f"upload of {length / 2**20:.1f} MB is over the {mb:g} MB limit: use a smaller image"},
                )
                return
            data = self.rfile.read(length)
            result = render_upload(model, data, labels)
            self._json(HTTPStatus.BAD_REQUEST if "error" in result else HTTPStatus.OK, result)

    Handler.timeout = timeout  # socket timeout: a stalled client cannot hold the one-at-a-time server
    return Handler


def make_server(
    model: nn.Module,
    labels: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 7860,
    model_name: str = "",
    note: str = "",
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 30.0,
) -> HTTPServer:
    """A bound server (port 0: a free one, see `server.server_address`); run it with serve_forever()."""
    page = _page(model_name, note, max_bytes)
    handler = _handler(model.eval(), labels, page, example_png(), max_bytes, timeout)
    return HTTPServer((host, port), handler)


def serve(
    model: nn.Module, labels: Sequence[str], ready: Optional[Callable[[HTTPServer], None]] = None, **options: Any
) -> None:
    """Serve the demo until Ctrl-C (or `server.shutdown()` from another thread), then close the socket; `options` are
    make_server's (host, port, model_name, note, max_bytes, timeout)."""
    server = make_server(model, labels, **options)
    try:
        if ready is not None:
            ready(server)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
