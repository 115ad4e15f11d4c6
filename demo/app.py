"""The demo's app: accepts every POST, remembers which delivery IDs reached it.

GET /deliveries lists them (the demo asks the app directly, not through the sidecar).
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = []


class App(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        received.append(self.headers.get("X-Hookguard-Delivery-Id", ""))
        self.reply(200, b"processed by the demo app\n")

    def do_GET(self):
        if self.path == "/deliveries":
            self.reply(200, json.dumps(received).encode())
        else:
            self.reply(404, b"not found\n")

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
