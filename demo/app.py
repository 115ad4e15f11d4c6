"""The demo's app: accepts every POST, remembers which delivery IDs reached it.

GET /deliveries lists them (the demo asks the app directly, not through the sidecar).
On /shipments (the queue-mode endpoint) it plays a busy app: the first attempt of each
delivery gets 503, the next one 200; a body naming "poison" gets 422 every time.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = []
attempts = {}


class App(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        delivery_id = self.headers.get("X-Hookguard-Delivery-Id", "")
        received.append(delivery_id)
        if self.path == "/shipments":
            attempts[delivery_id] = attempts.get(delivery_id, 0) + 1
            if b"poison" in body:
                return self.reply(422, b"cannot process this shipment\n")
            if attempts[delivery_id] == 1:
                return self.reply(503, b"busy, try again\n")
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
