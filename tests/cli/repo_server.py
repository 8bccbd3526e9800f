#!/usr/bin/env python3
"""repo_server.py ROOT PORTFILE [CERT.pem] - a static HTTP server that can
misbehave; with CERT.pem (key and certificate) it speaks https.

Serves ROOT on 127.0.0.1 (a free port, written to PORTFILE), with Range
support.  The first path component picks a behaviour:
  /ok/PATH        plain static file (Range honoured)
  /cut/PATH       the first GET of each file sends half of it and hangs up;
                  later GETs (a client resuming with Range) are served
  /norange/PATH   like /cut the first time; later GETs ignore Range and send
                  the whole file with 200 (an old server or proxy)
  /endless/PATH   files under packages/ never end: the real bytes, then
                  junk, without a Content-Length (bounded to 64 MiB extra)
  /slow/PATH      files under packages/ trickle out (16 KiB per 100 ms), so
                  that two clients overlap
  /racy/PATH      the first GET of index.toml serves ROOT/old/index.toml,
                  later ones the current one (a publish landing between a
                  client's index and signature requests)
  /trickle/PATH   sends 2 bytes a second, forever (a slow-retrieval attack:
                  faster than 1 byte/s, never done)
  /old/PATH       serves ROOT/old/PATH (a saved, older repository state);
                  so does /ok/PATH while the file ROOT/replay exists
Every request line is appended to ROOT/requests.log.
"""
import http.server
import os
import socketserver
import sys
import threading

ROOT = os.path.abspath(sys.argv[1])
cut_done = set()
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except ConnectionResetError:
            pass   # a client that refused a reply and hung up

    def do_GET(self):
        with open(os.path.join(ROOT, "requests.log"), "a") as log:
            log.write("%s %s\n" % (self.path, self.headers.get("Range", "-")))
        parts = self.path.lstrip("/").split("/", 1)
        if len(parts) != 2 or ".." in parts[1]:
            return self.send_error(404)
        mode, rel = parts
        if mode == "trickle":   # whatever the path
            import time
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 30))
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"# ")
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:
                return
        # /old/, or /ok/ while ROOT/replay exists: the saved older state
        # (a mirror replaying stale metadata at the same URL).
        replay = mode == "ok" and os.path.exists(os.path.join(ROOT, "replay"))
        base = os.path.join(ROOT, "old") if mode == "old" or replay else ROOT
        if mode == "racy" and rel == "index.toml":
            with lock:
                first = ("racy", rel) not in cut_done
                cut_done.add(("racy", rel))
            if first:
                base = os.path.join(ROOT, "old")
        path = os.path.join(base, rel)
        if not os.path.isfile(path):
            return self.send_error(404)
        data = open(path, "rb").read()
        if mode == "endless" and rel.startswith("packages/"):
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                self.wfile.write(data)
                for _ in range(64):
                    self.wfile.write(b"\xee" * (1 << 20))
            except OSError:
                pass
            return
        start = 0
        rng = self.headers.get("Range")
        if mode == "norange":
            rng = None   # an old server or proxy: always the whole file
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode in ("cut", "norange") and rel.startswith("packages/"):
            with lock:
                first = (mode, path) not in cut_done
                cut_done.add((mode, path))
            if first:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
        try:
            if mode == "slow" and rel.startswith("packages/"):
                import time
                for i in range(0, len(body), 16384):
                    self.wfile.write(body[i:i + 16384])
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                self.wfile.write(body)
        except OSError:
            pass   # the client hung up (refusing a reply is its right)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


srv = Server(("127.0.0.1", 0), Handler)
if len(sys.argv) > 3:
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
srv.serve_forever()
