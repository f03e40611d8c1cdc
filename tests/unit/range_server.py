#!/usr/bin/python3
"""A static file server for the URL fetcher's tests: Range support that can be switched off, and
faults on demand.

Usage: range_server.py ROOT [--port-file FILE] [--port N] [--no-range] [--truncate]
                       [--truncate-nolength] [--gcs]

Serves the files under ROOT over HTTP/1.1 (keep-alive) on 127.0.0.1 (port 0: a free one, written
to --port-file once listening). GET and HEAD; "Range: bytes=S-E", "bytes=S-" and "bytes=-N" give
206 with Content-Range, or 416 past the end. Modes, set by the flags or at run time with
GET /_ctl?ranges=0|1&truncate=0|1&nolength=0|1&digest=MODE&corrupt=N (answers the current
counters as JSON):
  --no-range           Range is ignored: every GET answers 200 with the whole file.
  --truncate           bodies stop halfway with the full Content-Length announced, then the
                       connection closes (curl sees a partial transfer).
  --truncate-nolength  bodies stop halfway with no Content-Length (Connection: close): only the
                       client's own byte count can tell.
  --gcs                also answers the GCS JSON API: /storage/v1/b/B/o/NAME (metadata, with
                       the object's md5Hash and crc32c) and ...?alt=media (content) for ROOT/B/NAME.
  digest=MODE          checksums of the whole file in every answer: none (default), md5
                       (Content-MD5), digest (Digest: md5=…,SHA-256=…), repr (Repr-Digest:
                       sha-256=:…:), goog (x-goog-hash: crc32c=…, sent twice with md5=…), bad
                       (Digest: the MD5 of other bytes).
  corrupt=N            the next N GET bodies arrive with one byte flipped.
/_redirect/N/NAME answers 302 N times on the way to /NAME (the last Location absolute),
/_rel/NAME with a relative Location, /_redirect/loop/NAME forever.
GET /_ctl gives {"GET": n, "HEAD": n, "ranged": n, "whole": n, ...modes}. Exits after 600 s.
"""
import base64
import hashlib
import json
import os
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
ROOT = os.path.abspath(args[0])
mode = {"ranges": "--no-range" not in args, "truncate": "--truncate" in args,
        "nolength": "--truncate-nolength" in args, "digest": "none", "corrupt": 0}
GCS = "--gcs" in args
stats = {"GET": 0, "HEAD": 0, "ranged": 0, "whole": 0}
lock = threading.Lock()


def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default


def crc32c(data):
    """CRC-32C (Castagnoli), as GCS keeps it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def b64(raw):
    return base64.b64encode(raw).decode()


def sums(path):
    with open(path, "rb") as f:
        data = f.read()
    return data, hashlib.md5(data).digest(), hashlib.sha256(data).digest()


def parse_range(value, size):
    """(start, end) inclusive, None to ignore the header, or 'bad' for 416."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return "bad"
            return (max(0, size - n), size - 1) if size else "bad"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle(self):
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client gave up on a body (an overlong 200, a test's fault)

    def reply_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def ctl(self, url):
        q = urllib.parse.parse_qs(url.query)
        with lock:
            for key in ("ranges", "truncate", "nolength"):
                if key in q:
                    mode[key] = q[key][0] == "1"
            if "digest" in q:
                mode["digest"] = q["digest"][0]
            if "corrupt" in q:
                mode["corrupt"] = int(q["corrupt"][0])
            answer = dict(stats, **mode)
        self.reply_json(200, answer)

    def redirect(self, path):
        """/_redirect/N/NAME: N hops (path-absolute, the last one absolute) to /NAME;
        /_rel/NAME: a relative Location ("../NAME"); /_redirect/loop/NAME: forever."""
        if path.startswith("/_rel/"):
            loc = "../" + path[len("/_rel/"):]
        else:
            n, _, name = path[len("/_redirect/"):].partition("/")
            if n == "loop":
                loc = path
            elif int(n) > 1:
                loc = "/_redirect/%d/%s" % (int(n) - 1, name)
            else:
                loc = "http://127.0.0.1:%d/%s" % (self.server.server_address[1], name)
        self.send_response(302)
        self.send_header("Location", loc)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def file_for(self, url):
        """(path of the file to serve, is GCS metadata) or (None, _)."""
        path = urllib.parse.unquote(url.path)
        if GCS and path.startswith("/storage/v1/b/"):
            rest = url.path[len("/storage/v1/b/"):]
            bucket, sep, obj = rest.partition("/o/")
            if not sep:
                return None, False
            name = urllib.parse.unquote(obj)
            media = urllib.parse.parse_qs(url.query).get("alt") == ["media"]
            return os.path.join(ROOT, urllib.parse.unquote(bucket), name), not media
        return os.path.join(ROOT, path.lstrip("/")), False

    def serve(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_ctl"):
            return self.ctl(url)
        if url.path.startswith(("/_redirect/", "/_rel/")):
            return self.redirect(url.path)
        with lock:
            stats[self.command] += 1
        path, meta = self.file_for(url)
        real = os.path.realpath(path) if path else ""
        if not path or not real.startswith(ROOT + os.sep) or not os.path.isfile(real):
            return self.reply_json(404, {"error": "not found"})
        st = os.stat(real)
        size = st.st_size
        if meta:
            data, md5, _ = sums(real)
            crc = crc32c(data) if size <= 1 << 20 else None   # pure Python: small objects only
            doc = {"name": os.path.basename(real), "size": str(size),
                   "generation": str(st.st_mtime_ns), "md5Hash": b64(md5)}
            if crc is not None:
                doc["crc32c"] = b64(crc.to_bytes(4, "big"))
            return self.reply_json(200, doc)
        rng = parse_range(self.headers.get("Range"), size) if mode["ranges"] else None
        if rng == "bad":
            self.send_response(416)
            self.send_header("Content-Range", "bytes */%d" % size)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = rng if rng else (0, size - 1)
        length = end - start + 1 if size else 0
        with lock:
            stats["ranged" if rng else "whole"] += self.command == "GET"
        truncate = mode["truncate"] or mode["nolength"]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", '"%x-%x"' % (size, st.st_mtime_ns))
        if mode["ranges"]:
            self.send_header("Accept-Ranges", "bytes")
        if rng:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        digest = mode["digest"]
        if digest != "none":
            data, md5, sha = sums(real)
            if digest == "md5":
                self.send_header("Content-MD5", b64(md5))
            elif digest == "digest":
                self.send_header("Digest", "md5=%s,SHA-256=%s" % (b64(md5), b64(sha)))
            elif digest == "repr":
                self.send_header("Repr-Digest", "sha-256=:%s:" % b64(sha))
            elif digest == "goog":
                self.send_header("x-goog-hash", "crc32c=%s" % b64(crc32c(data).to_bytes(4, "big")))
                self.send_header("x-goog-hash", "md5=%s" % b64(md5))
            elif digest == "bad":
                self.send_header("Digest", "md5=%s" % b64(hashlib.md5(b"other").digest()))
        corrupt = False
        if self.command == "GET" and length:
            with lock:
                if mode["corrupt"] > 0:
                    mode["corrupt"] -= 1
                    corrupt = True
        if mode["nolength"] and self.command == "GET":
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        send = length // 2 if truncate else length
        with open(real, "rb") as f:
            f.seek(start)
            while send > 0:
                chunk = f.read(min(send, 1 << 16))
                if not chunk:
                    break
                if corrupt:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    corrupt = False
                self.wfile.write(chunk)
                send -= len(chunk)
        if truncate:
            self.wfile.flush()
            self.close_connection = True

    do_GET = serve
    do_HEAD = serve


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", int(opt("--port", "0"))), Handler)
    srv.daemon_threads = True
    port_file = opt("--port-file")
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(port_file + ".tmp", port_file)
    else:
        print(srv.server_address[1], flush=True)
    threading.Timer(600, lambda: os._exit(0)).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
