"""Attacks, each with the exact refusal: slow clients, forged tokens, injection strings, oversized input."""
import base64
import hashlib
import hmac
import json
import socket
import time
import urllib.parse

from rtplib import ServerTestCase, main, on_postgres

BAD_TOKEN = "The access-token sent is invalid or no longer accepted."
INJECTIONS = ["x'; DROP TABLE users; --", "\" OR 1=1 --", "a:b'); DELETE FROM experiments; --", "%' OR '%'='",
              "Robert'); DROP TABLE process_variables;--:x", "1 UNION SELECT password_hash FROM users"]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(header, claims, key):
    h = b64(json.dumps(header).encode())
    c = b64(json.dumps(claims).encode())
    alg = {"HS256": hashlib.sha256, "HS384": hashlib.sha384}.get(header.get("alg"), hashlib.sha256)
    return f"{h}.{c}.{b64(hmac.new(key.encode(), f'{h}.{c}'.encode(), alg).digest())}"


class Security(ServerTestCase):
    server_env = {"RTP_CLIENT_TIMEOUT": "1", "SECRET_KEY": "test-signing-key-0123456789abcdef"}

    def raw(self):
        s = socket.create_connection(("127.0.0.1", self.s.port), timeout=20)
        self.addCleanup(s.close)
        return s

    def closed_within(self, sock, seconds):
        deadline = time.monotonic() + seconds
        sock.settimeout(seconds)
        try:
            while time.monotonic() < deadline:
                if sock.recv(4096) == b"":
                    return True
        except (ConnectionResetError, socket.timeout):
            return time.monotonic() < deadline
        return False

    def test_slowloris_is_dropped_and_others_served(self):
        slow = self.raw()
        slow.sendall(b"GET /auth/users/current HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(3):
            time.sleep(0.3)
            self.assertEqual(self.s.request("GET", "/auth/users/current", token=self.admin).status, 200)
            try:
                slow.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        self.assertTrue(self.closed_within(slow, 10))
        stalled = self.raw()
        stalled.sendall(b"POST /auth/users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"login")
        self.assertTrue(self.closed_within(stalled, 10))
        self.assertEqual(self.s.request("GET", "/auth/users/current", token=self.admin).status, 200)

    def test_forged_tokens(self):
        now = int(time.time())
        key = "test-signing-key-0123456789abcdef"
        good = {"user_id": "0", "iat": now, "exp": now + 60, "pwv": 0}
        self.assertEqual(self.s.request("GET", "/auth/users/current", token=jwt({"alg": "HS256", "typ": "JWT"}, good, key)).status, 200)
        forged = [
            jwt({"alg": "HS384", "typ": "JWT"}, good, key),
            jwt({"alg": "HS256", "typ": "JWT"}, good, "another key"),
            jwt({"alg": "HS256", "typ": "JWT"}, dict(good, exp=now - 1), key),
            jwt({"alg": "HS256", "typ": "JWT"}, dict(good, pwv=1), key),
            jwt({"alg": "HS256", "typ": "JWT"}, dict(good, user_id="ghost"), key),
            jwt({"alg": "HS256", "typ": "JWT"}, {k: v for k, v in good.items() if k != "exp"}, key),
            b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(json.dumps(good).encode()) + ".",
        ]
        for token in forged:
            with self.subTest(token=token):
                self.assertError(self.s.request("GET", "/auth/users/current", token=token), 403, BAD_TOKEN)
        # a deleted user and a changed password end tokens at once
        self.s.request("POST", "/auth/users", token=self.admin, json_body={"login_name": "eve", "first_name": "E",
                                                                          "last_name": "V", "user_type": "Admin"})
        eve_id = self.s.db("SELECT user_id FROM users WHERE login_name = 'eve'")[0][0]
        eve = jwt({"alg": "HS256", "typ": "JWT"}, dict(good, user_id=eve_id), key)
        self.assertEqual(self.s.request("GET", "/auth/users/current", token=eve).status, 200)
        self.s.request("PUT", "/auth/users/" + eve_id, token=self.admin, json_body={"password": "changed"})
        self.assertError(self.s.request("GET", "/auth/users/current", token=eve), 403, BAD_TOKEN)
        self.s.request("DELETE", "/auth/users/" + eve_id, token=self.admin)
        self.assertError(self.s.request("GET", "/auth/users/current", token=eve), 403, BAD_TOKEN)

    def test_injection_strings_are_data(self):
        before = self.s.db("SELECT COUNT(*) FROM users")
        for i, text in enumerate(INJECTIONS):
            with self.subTest(text=text):
                quoted = urllib.parse.quote(text, safe="")
                for method, path in [("GET", "/auth/users/"), ("GET", "/experiments/"), ("GET", "/experiments/pvs/"),
                                     ("DELETE", "/experiments/pvs/"), ("GET", "/email/subscriptions/")]:
                    r = self.s.request(method, path + quoted, token=self.admin)
                    self.assertIn(r.status, (200, 404), (path, r))
                r = self.s.request("POST", "/auth/users", token=self.admin, json_body={
                    "login_name": text[:100], "first_name": text, "last_name": text, "user_type": "User", "email": ""})
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json["user"]["login_name"], text[:100])  # stored verbatim
                # as a PV name it is refused by the EPICS name rule; as a PV's text it is stored verbatim
                r = self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Inj:" + text[:90]})
                self.assertEqual(r.status, 400, r)
                pv = f"Inj:n{i}"
                r = self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": pv, "human_readable_name": text})
                self.assertEqual(r.status, 200, r)
                self.assertEqual(self.s.request("GET", "/experiments/pvs/" + urllib.parse.quote(pv, safe=":"),
                                                token=self.admin).json["process_variable"]["human_readable_name"], text)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM users")[0][0], before[0][0] + len(INJECTIONS))
        tables = {t for (t,) in self.s.db("SELECT table_name FROM information_schema.tables" if on_postgres()
                                          else "SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.assertTrue({"users", "experiments", "process_variables"} <= tables)

    def test_oversized_headers_and_bodies(self):
        s = self.raw()
        s.sendall(b"GET /auth/users/current HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n")
        self.assertTrue(self.closed_within(s, 10))  # libsoup drops headers over 64 KiB
        self.assertError(self.s.request("POST", "/auth/users", token=self.admin, body=b"{" + b" " * (2 * 1024 * 1024) + b"}"),
                         413, "The request body is too large.")
        self.assertEqual(self.s.request("GET", "/auth/users/current", token=self.admin).status, 200)

    def test_preflight_from_any_origin(self):
        for origin in ["http://evil.example", "https://frontend.lab", "null"]:
            r = self.s.request("OPTIONS", "/experiments/pvs", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                                      "Access-Control-Request-Headers": "x-access-tokens"})
            self.assertIn(r.status, (200, 204))
            self.assertEqual(r.header("Access-Control-Allow-Origin"), origin)
            # a preflight answers no data
            self.assertEqual(r.raw, "")


if __name__ == "__main__":
    main()
