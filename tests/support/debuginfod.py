"""A debuginfod server for tests: a real HTTP server on loopback serving files by path."""
from __future__ import annotations

import contextlib
import http.server
import threading


@contextlib.contextmanager
def serve(files: dict[str, bytes]):
    """Serves `files` ({"/buildid/<id>/debuginfo": bytes}) on loopback; yields its URL
    and the list of paths asked for."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", asked
    finally:
        srv.shutdown()
        srv.server_close()
