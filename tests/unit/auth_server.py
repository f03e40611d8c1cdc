#!/usr/bin/python3
"""Token server for test_auth: a Google OAuth2 token endpoint and GCE metadata server stand-in.

Usage: auth_server.py DIR. Listens on a free loopback port and writes it to DIR/port. On every
request it re-reads DIR/config.json (what to expect and answer) and appends one JSON line per
request to DIR/requests.log ({"path", "grant", "ok", "reason", "token"}), so the test counts
requests and reads failures without an HTTP client of its own.

config.json: n (hex modulus), e (int) and kid, iss, scope of the service account;
client_id, client_secret, refresh_token, quota_project of the authorized user;
expires_in (int) and expires_as_string (bool) for the answers.

POST /token verifies a jwt-bearer assertion (RS256 with the public key, in pure Python: no RSA in
the standard library) or a refresh_token grant. GET / and GET
/computeMetadata/v1/instance/service-accounts/default/token answer as the metadata server does,
the latter only with "Metadata-Flavor: Google". Exits on its own after 300 s.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

DIR = sys.argv[1]
METADATA_TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token"
# DER prefix of DigestInfo(SHA-256), RFC 8017 section 9.2 note 1.
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
issued = 0
lock = threading.Lock()


def b64url_decode(s):
    if "=" in s:
        raise ValueError("base64url with padding")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def rs256_valid(signing_input, sig, n, e):
    """RSASSA-PKCS1-v1_5 verification with SHA-256 (RFC 8017 8.2.2)."""
    k = (n.bit_length() + 7) // 8
    if len(sig) != k:
        return False
    s = int.from_bytes(sig, "big")
    if s >= n:
        return False
    em = pow(s, e, n).to_bytes(k, "big")
    t = SHA256_DIGEST_INFO + hashlib.sha256(signing_input).digest()
    expected = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return hmac.compare_digest(em, expected)


def check_jwt(jwt, cfg, aud):
    """Returns None if the assertion is valid, else the reason."""
    parts = jwt.split(".")
    if len(parts) != 3:
        return "not three JWT parts"
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except ValueError as exc:
        return "undecodable JWT: %s" % exc
    want_header = {"alg": "RS256", "typ": "JWT", "kid": cfg["kid"]}
    if header != want_header:
        return "header %r != %r" % (header, want_header)
    if not rs256_valid((parts[0] + "." + parts[1]).encode(), sig, int(cfg["n"], 16), int(cfg["e"])):
        return "bad signature"
    for name, want in (("iss", cfg["iss"]), ("scope", cfg["scope"]), ("aud", aud)):
        if claims.get(name) != want:
            return "claim %s=%r, expected %r" % (name, claims.get(name), want)
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int):
        return "iat/exp not integers"
    if abs(iat - time.time()) > 60:
        return "iat %d too far from now" % iat
    if exp - iat != 3600:
        return "exp - iat = %d" % (exp - iat)
    extra = set(claims) - {"iss", "scope", "aud", "iat", "exp"}
    if extra:
        return "unexpected claims %s" % sorted(extra)
    return None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def record(self, grant, reason, token=None):
        with open(os.path.join(DIR, "requests.log"), "a") as f:
            f.write(json.dumps({"path": self.path, "grant": grant, "ok": reason is None,
                                "reason": reason, "token": token}) + "\n")

    def reply(self, status, obj, flavor=False):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if flavor:
            self.send_header("Metadata-Flavor", "Google")
        self.end_headers()
        self.wfile.write(body)

    def grant(self, cfg, grant):
        global issued
        with lock:
            issued += 1
            token = "tok-%d" % issued
        exp = cfg.get("expires_in", 3600)
        self.record(grant, None, token)
        self.reply(200, {"access_token": token, "token_type": "Bearer",
                         "expires_in": str(exp) if cfg.get("expires_as_string") else exp},
                   flavor=grant == "metadata")

    def refuse(self, grant, reason, status=400):
        self.record(grant, reason)
        self.reply(status, {"error": "invalid_grant", "error_description": reason})

    def do_GET(self):
        cfg = json.load(open(os.path.join(DIR, "config.json")))
        flavor = self.headers.get("Metadata-Flavor")
        if self.path == "/":
            self.record("probe", None if flavor == "Google" else "no Metadata-Flavor")
            self.reply(200, {}, flavor=True)
        elif self.path == METADATA_TOKEN:
            if flavor != "Google":
                self.refuse("metadata", "no Metadata-Flavor: Google", 403)
            else:
                self.grant(cfg, "metadata")
        else:
            self.refuse("?", "unknown path", 404)

    def do_POST(self):
        cfg = json.load(open(os.path.join(DIR, "config.json")))
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length).decode()
        if self.path != "/token":
            return self.refuse("?", "unknown path", 404)
        if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
            return self.refuse("?", "content type %s" % self.headers.get("Content-Type"))
        form = urllib.parse.parse_qs(raw, keep_blank_values=True, strict_parsing=True)
        if any(len(v) != 1 for v in form.values()):
            return self.refuse("?", "repeated form fields")
        form = {k: v[0] for k, v in form.items()}
        grant = form.get("grant_type")
        aud = "http://127.0.0.1:%d/token" % self.server.server_port
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            if set(form) != {"grant_type", "assertion"}:
                return self.refuse("jwt", "form fields %s" % sorted(form))
            reason = check_jwt(form["assertion"], cfg, aud)
            return self.refuse("jwt", reason) if reason else self.grant(cfg, "jwt")
        if grant == "refresh_token":
            want = {"grant_type": "refresh_token", "client_id": cfg["client_id"],
                    "client_secret": cfg["client_secret"], "refresh_token": cfg["refresh_token"]}
            if form != want:
                return self.refuse("refresh", "form does not match the authorized user")
            if self.headers.get("x-goog-user-project") != cfg.get("quota_project"):
                return self.refuse("refresh", "x-goog-user-project %r"
                                   % self.headers.get("x-goog-user-project"))
            return self.grant(cfg, "refresh")
        return self.refuse("?", "grant_type %r" % grant)


def main():
    server = HTTPServer(("127.0.0.1", 0), Handler)
    tmp = os.path.join(DIR, "port.tmp")
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_port)
    os.rename(tmp, os.path.join(DIR, "port"))
    threading.Timer(300, lambda: os._exit(3)).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
