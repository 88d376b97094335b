"""A shop's website for the namespace tests: `python -m tests.netns_target HOST PORT`.

Answers every GET with 200 "shop" until it is stopped; run inside a namespace
(`ip netns exec NS ...`), it is reachable only over that namespace's links.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Shop(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"shop"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Shop)
    print("ready", flush=True)
    server.serve_forever()
