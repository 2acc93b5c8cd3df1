"""Integration tests of /auth and the HTTP conventions of API.md, over real HTTP."""
import concurrent.futures
import os
import signal
import sqlite3
import subprocess
import time

from rtplib import Server, ServerTestCase, main, on_postgres, SERVER
import unittest

MISSING_TOKEN = "Access to this resource requires a valid access-token."
BAD_TOKEN = "The access-token sent is invalid or no longer accepted."
ADMIN_ONLY = "Only administrators are allowed to access this endpoint."
NOT_JSON = "You must provide the data in the body as JSON."
WRONG_TYPE = "Some or more values in the JSON body were null or do not correspond to the required column type in the database."


class Login(ServerTestCase):
    def test_login_and_current_user(self):
        r = self.s.request("POST", "/auth/get_access_token", basic=("admin", self.s.admin_password),
                           json_body={"username": "admin", "password": "ignored"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["user_url"], "/auth/users/0")
        self.assertEqual(r.json["access_token"].count("."), 2)
        me = self.s.request("GET", "/auth/users/current", token=r.json["access_token"])
        self.assertEqual(me.status, 200)
        self.assertEqual(me.json, {"user": {
            "user_id": "0", "login_name": "admin", "first_name": "Admin", "last_name": "Admin", "email": None,
            "user_type": "Admin", "preferred_language": "en", "experiment_urls": [], "url": "/auth/users/0"}})

    def test_login_refusals(self):
        no_basic = "Access requires authorization via login_name and password (Basic Auth)."
        self.assertError(self.s.request("POST", "/auth/get_access_token"), 401, no_basic)
        self.assertError(self.s.request("POST", "/auth/get_access_token", basic="admin"), 401, no_basic)
        self.assertError(self.s.request("POST", "/auth/get_access_token", basic=("admin", "")), 401, no_basic)
        self.assertError(self.s.request("POST", "/auth/get_access_token", headers={"Authorization": "Basic %%%"}), 401, no_basic)
        self.assertError(self.s.request("POST", "/auth/get_access_token", basic=("admin", "wrong")), 403,
                         "The login_name and password combination is not present in the database.")
        self.assertError(self.s.request("POST", "/auth/get_access_token", basic=("nobody", "x")), 403,
                         "The login_name and password combination is not present in the database.")

    def test_token_refusals(self):
        self.assertError(self.s.request("GET", "/auth/users/current"), 401, MISSING_TOKEN)
        self.assertError(self.s.request("GET", "/auth/users/current", token="garbage"), 403, BAD_TOKEN)
        head, payload, sig = self.admin.split(".")
        self.assertError(self.s.request("GET", "/auth/users/current", token=f"{head}.{payload}.{sig[:-2]}xx"), 403, BAD_TOKEN)
        none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"
        self.assertError(self.s.request("GET", "/auth/users/current", token=f"{none}.{payload}."), 403, BAD_TOKEN)

    def test_brute_force_lockout(self):
        for _ in range(10):
            r = self.s.request("POST", "/auth/get_access_token", basic=("admin", "guess"), source="127.0.0.2")
            self.assertEqual(r.status, 403)
        r = self.s.request("POST", "/auth/get_access_token", basic=("admin", self.s.admin_password), source="127.0.0.2")
        self.assertEqual(r.status, 429, r)
        self.assertRegex(r.json["errors"][0], r"^Too many failed logins for admin\. Try again in \d+ seconds\.$")
        retry = int(r.header("Retry-After"))
        self.assertTrue(0 < retry <= 60)
        # the stranger at 127.0.0.2 does not lock the admin out at 127.0.0.1
        self.s.login(source="127.0.0.1")


class Users(ServerTestCase):
    def test_list_and_admin_only(self):
        user, token = self.create_user("carol")
        r = self.s.request("GET", "/auth/users", token=self.admin)
        self.assertEqual(r.status, 200)
        self.assertEqual(sorted(u["login_name"] for u in r.json["users"]), ["admin", "carol"])
        self.assertError(self.s.request("GET", "/auth/users", token=token), 403, ADMIN_ONLY)
        self.assertError(self.s.request("POST", "/auth/users", token=token, json_body={}), 403, ADMIN_ONLY)
        self.assertError(self.s.request("DELETE", "/auth/users/0", token=token), 403, ADMIN_ONLY)

    def test_create(self):
        r = self.s.request("POST", "/auth/users", token=self.admin, json_body={
            "login_name": "dave", "first_name": "Dave <b>&amp;</b>", "last_name": "Müller", "user_type": "Admin",
            "email": "dave@lab.example.org", "preferred_language": "de"})
        self.assertEqual(r.status, 200, r)
        u = r.json["user"]
        self.assertEqual(u["first_name"], "Dave <b>&amp;</b>")  # stored verbatim
        self.assertEqual(u["url"], "/auth/users/" + u["user_id"])
        self.assertEqual(len(u["temporary_password"]), 16)
        rows = self.s.db("SELECT login_name, last_name, user_type, email, preferred_language, password_hash FROM users WHERE user_id = ?", (u["user_id"],))
        self.assertEqual(rows[0][:5], ("dave", "Müller", "Admin", "dave@lab.example.org", "de"))
        self.assertTrue(rows[0][5].startswith("$argon2id$"))
        self.assertNotIn(u["temporary_password"], rows[0][5])
        self.s.login("dave", u["temporary_password"])

    def test_create_errors_change_nothing(self):
        before = self.s.db("SELECT COUNT(*) FROM users")
        cases = [
            ({"login_name": "x", "first_name": "X", "last_name": "Y"}, 400, "The user creation request did not contain all of the information required."),
            ({"login_name": "x", "first_name": "X", "last_name": "Y", "user_type": "Boss"}, 400, "user_type: The user_type (Boss) is not valid and was therefore not accepted."),
            ({"login_name": "admin", "first_name": "X", "last_name": "Y", "user_type": "User"}, 409, "A user (admin) is already present in the database."),
            ({"login_name": 5, "first_name": "X", "last_name": "Y", "user_type": "User"}, 400, WRONG_TYPE),
            ({"login_name": "x", "first_name": None, "last_name": "Y", "user_type": "User"}, 400, WRONG_TYPE),
            ({"login_name": "x", "first_name": "F" * 101, "last_name": "Y", "user_type": "User"}, 400, "first_name: The value is longer than 100 characters."),
            ({"login_name": "x", "first_name": "X", "last_name": "Y", "user_type": "User", "preferred_language": "klingon-tlh-x"}, 400, "preferred_language: The value is longer than 10 characters."),
            ({"login_name": "x", "first_name": "X", "last_name": "Y", "user_type": "User", "email": "nope"}, 400, "email: nope is not a valid email address"),
            ({"login_name": "x'; DROP TABLE users; --", "first_name": "X\u0007", "last_name": "Y", "user_type": "User"}, 400, "first_name: The value must not contain control characters."),
        ]
        for body, status, message in cases:
            with self.subTest(body=body):
                self.assertError(self.s.request("POST", "/auth/users", token=self.admin, json_body=body), status, message)
        for raw in ["", "not json", "[1, 2]", "\"text\"", "{\"a\": "]:
            with self.subTest(raw=raw):
                self.assertError(self.s.request("POST", "/auth/users", token=self.admin, body=raw), 400, NOT_JSON)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM users"), before)

    def test_get_rules(self):
        carol, carol_token = self.create_user("carol")
        self.assertEqual(self.s.request("GET", "/auth/users/" + carol["user_id"], token=carol_token).json["user"]["login_name"], "carol")
        self.assertEqual(self.s.request("GET", "/auth/users/" + carol["user_id"], token=self.admin).status, 200)
        # another user's record: 403 whether or not it exists
        self.assertError(self.s.request("GET", "/auth/users/0", token=carol_token), 403,
                         "Only administrators or the user with user_id 0 can access this endpoint.")
        self.assertError(self.s.request("GET", "/auth/users/ghost", token=carol_token), 403,
                         "Only administrators or the user with user_id ghost can access this endpoint.")
        self.assertError(self.s.request("GET", "/auth/users/ghost", token=self.admin), 404,
                         "The user (ghost) is not present in the database.")

    def test_update_partial(self):
        carol, carol_token = self.create_user("carol", email="c@lab.org")
        self.create_user("erin")
        r = self.s.request("PUT", "/auth/users/current", token=carol_token, json_body={
            "first_name": "Caroline", "email": "broken", "login_name": "erin", "user_type": "Admin",
            "preferred_language": "nl", "user_id": "ignored", "url": "ignored", "experiment_urls": []})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["user"]["first_name"], "Caroline")
        self.assertEqual(r.json["user"]["preferred_language"], "nl")  # no catalogue: answers stay English
        self.assertEqual(r.json["user"]["email"], "c@lab.org")
        self.assertEqual(r.json["errors"], [
            "login_name: The login_name (erin) is already in use.",
            "email: broken is not a valid email address",
            "user_type: Only administrators can change the user_type.",
        ])
        self.assertEqual(self.s.db("SELECT first_name, user_type, login_name FROM users WHERE user_id = ?", (carol["user_id"],)),
                         [("Caroline", "User", "carol")])
        # Deviation: one's own unchanged login_name is not an error; "" clears the email
        r = self.s.request("PUT", "/auth/users/" + carol["user_id"] + "/", token=carol_token,
                           json_body={"login_name": "carol", "email": ""})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("errors", r.json)
        self.assertIsNone(r.json["user"]["email"])
        # a wrong type changes nothing
        self.assertError(self.s.request("PUT", "/auth/users/current", token=carol_token, json_body={"first_name": "Z", "last_name": []}), 400, WRONG_TYPE)
        self.assertEqual(self.s.db("SELECT first_name FROM users WHERE user_id = ?", (carol["user_id"],)), [("Caroline",)])
        # admin promotes; the last admin cannot be demoted
        r = self.s.request("PUT", "/auth/users/" + carol["user_id"], token=self.admin, json_body={"user_type": "Admin"})
        self.assertEqual(r.json["user"]["user_type"], "Admin")
        r = self.s.request("PUT", "/auth/users/" + carol["user_id"], token=self.admin, json_body={"user_type": "Root"})
        self.assertEqual(r.json["errors"], ["user_type: The user_type (Root) is not valid and was therefore not accepted."])
        self.s.request("PUT", "/auth/users/" + carol["user_id"], token=self.admin, json_body={"user_type": "User"})
        r = self.s.request("PUT", "/auth/users/0", token=self.admin, json_body={"user_type": "User"})
        self.assertEqual(r.json["errors"], ["user_type: The user_type cannot be changed from 'admin' to 'user' because the user 'admin' is the last registered admin in the database."])
        self.assertError(self.s.request("PUT", "/auth/users/0", token=carol_token, json_body={}), 403,
                         "Only administrators or the user with user_id 0 can access this endpoint.")

    def test_password_changes(self):
        carol, carol_token = self.create_user("carol")
        temp = carol["temporary_password"]
        r = self.s.request("PUT", "/auth/users/current", token=carol_token, json_body={"password": "n3w"})
        self.assertEqual(r.json["errors"], ["Basic Auth is required for non-admins."])
        r = self.s.request("PUT", "/auth/users/current", token=carol_token, json_body={"password": "n3w"}, basic=("carol", "wrong"))
        self.assertEqual(r.json["errors"], ["password: You are not authorized to change the password. Only administrators and the user carol which must authenticate with their access-token + password are allowed to change the password."])
        r = self.s.request("PUT", "/auth/users/current", token=carol_token, json_body={"password": ""}, basic=(":" + temp))
        self.assertEqual(r.json["errors"], ["password: The password must not be empty."])
        # username optional in Basic
        r = self.s.request("PUT", "/auth/users/current", token=carol_token, json_body={"password": "n3w"}, basic=(":" + temp))
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("errors", r.json)
        # the old token is refused at once (pwv), the old password too
        self.assertError(self.s.request("GET", "/auth/users/current", token=carol_token), 403, BAD_TOKEN)
        self.assertEqual(self.s.request("POST", "/auth/get_access_token", basic=("carol", temp)).status, 403)
        token = self.s.login("carol", "n3w")
        # an admin sets anyone's password without Basic
        r = self.s.request("PUT", "/auth/users/" + carol["user_id"], token=self.admin, json_body={"password": "by-admin"})
        self.assertNotIn("errors", r.json)
        self.assertError(self.s.request("GET", "/auth/users/current", token=token), 403, BAD_TOKEN)
        self.s.login("carol", "by-admin")

    def test_delete(self):
        carol, carol_token = self.create_user("carol")
        r = self.s.request("DELETE", "/auth/users/" + carol["user_id"], token=self.admin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"messages": ["The user (carol) was successfully deleted from the database."]})
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM users WHERE login_name = 'carol'"), [(0,)])
        self.assertError(self.s.request("GET", "/auth/users/current", token=carol_token), 403, BAD_TOKEN)
        self.assertError(self.s.request("DELETE", "/auth/users/" + carol["user_id"], token=self.admin), 404,
                         f"The user ({carol['user_id']}) is not present in the database.")
        self.assertError(self.s.request("DELETE", "/auth/users/0", token=self.admin), 409,
                         "The user (admin) is the only registered admin and therefore cannot be deleted.")
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM users WHERE user_id = '0'"), [(1,)])


class Conventions(ServerTestCase):
    def test_routing(self):
        self.assertEqual(self.s.request("GET", "/auth/users/", token=self.admin).status, 200)
        self.assertEqual(self.s.request("GET", "/auth/users/%30", token=self.admin).json["user"]["user_id"], "0")
        self.assertError(self.s.request("GET", "/nothing/here"), 404, "The requested URL was not found on the server.")
        # literal dot-segments are resolved by RFC 3986 before routing; nothing climbs out of the tree
        self.assertError(self.s.request("GET", "/../../etc/passwd"), 404, "The requested URL was not found on the server.")
        self.assertError(self.s.request("GET", "/auth/%2e%2e/%2e%2e/etc/passwd", token=self.admin), 404, "The requested URL was not found on the server.")
        self.assertError(self.s.request("GET", "/auth/users/%2e%2e", token=self.admin), 404, "The requested URL was not found on the server.")
        self.assertError(self.s.request("GET", "/auth/users/a%00b", token=self.admin), 404, "The requested URL was not found on the server.")
        r = self.s.request("PATCH", "/auth/users")
        self.assertError(r, 405, "The method is not allowed for the requested URL.")
        self.assertEqual(r.header("Allow"), "GET, POST, OPTIONS")
        # route before token: a wrong method without a token is still 405
        self.assertEqual(self.s.request("GET", "/auth/get_access_token").status, 405)

    def test_cors(self):
        r = self.s.request("OPTIONS", "/auth/users/current", headers={
            "Origin": "http://frontend.example:8080", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-access-tokens, content-type"})
        self.assertIn(r.status, (200, 204))
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "http://frontend.example:8080")
        self.assertEqual(r.header("Access-Control-Allow-Headers"), "x-access-tokens, content-type")
        for m in ["GET", "POST", "PUT", "DELETE", "OPTIONS"]:
            self.assertIn(m, r.header("Access-Control-Allow-Methods"))
        for resp in [self.s.request("GET", "/auth/users/current", headers={"Origin": "http://x"}),
                     self.s.request("GET", "/nope"), self.s.request("GET", "/auth/users", token=self.admin)]:
            self.assertIsNotNone(resp.header("Access-Control-Allow-Origin"))
            self.assertEqual(resp.header("Access-Control-Expose-Headers"), "Content-Disposition")
        self.assertEqual(self.s.request("GET", "/nope").header("Access-Control-Allow-Origin"), "*")

    def test_body_too_large(self):
        big = b'{"a": "' + b"x" * (1024 * 1024 + 10) + b'"}'
        self.assertError(self.s.request("POST", "/auth/users", token=self.admin, body=big), 413, "The request body is too large.")
        # the server goes on serving
        self.assertEqual(self.s.request("GET", "/auth/users/current", token=self.admin).status, 200)


class Lifecycle(unittest.TestCase):
    def test_restart_keeps_users_and_key(self):
        s = Server()
        self.addCleanup(s.cleanup)
        s.start()
        password = s.admin_password
        self.assertIsNotNone(password)
        token = s.login()
        r = s.request("POST", "/auth/users", token=token, json_body={"login_name": "kept", "first_name": "K", "last_name": "P", "user_type": "User"})
        self.assertEqual(r.status, 200)
        s.stop()
        if on_postgres():
            self.assertEqual(len(s.db("SELECT value FROM settings WHERE name = 'signing_key'")), 1)
        else:
            key_mode = os.stat(os.path.join(s.state, "secret_key")).st_mode & 0o777
            self.assertEqual(key_mode, 0o600)
        s2 = Server(workdir=s.dir)
        s2.start()
        self.assertIsNone(s2.admin_password)  # printed once only
        self.assertEqual(s2.request("GET", "/auth/users/current", token=token).status, 200)  # same key
        s2.login("admin", password)
        self.assertEqual(s2.db("SELECT COUNT(*) FROM users WHERE login_name = 'kept'"), [(1,)])
        s2.stop()

    def test_sigterm_finishes_requests(self):
        s = Server()
        self.addCleanup(s.cleanup)
        s.start()
        token = s.login()

        def create(i):
            return s.request("POST", "/auth/users", token=token, json_body={
                "login_name": f"u{i}", "first_name": "F", "last_name": "L", "user_type": "User"})

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(create, i) for i in range(8)]
            time.sleep(0.05)
            s.send_signal(signal.SIGTERM)
            results = []
            for f in futures:
                try:
                    results.append(f.result())
                except OSError:
                    results.append(None)  # refused after the listener closed: never acknowledged
        self.assertEqual(s.stop(), 0)
        acknowledged = {f"u{i}" for i, r in enumerate(results) if r is not None and r.status == 200}
        self.assertTrue(acknowledged, results)
        stored = {row[0] for row in s.db("SELECT login_name FROM users WHERE login_name LIKE 'u%'")}
        self.assertTrue(acknowledged <= stored, (acknowledged, stored))
        for r in results:
            if r is not None:
                self.assertIn(r.status, (200, 503), r)

    def test_bad_config_exits_2(self):
        s = Server(env={"FLASK_RUN_PORT": "eighty"})
        self.addCleanup(s.cleanup)
        s.args = []
        proc = subprocess.run([SERVER, "--state-dir", s.state], env=s.environment(), capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("FLASK_RUN_PORT", proc.stderr)
        self.assertIn("eighty", proc.stderr)
        self.assertFalse(os.path.exists(s.state))  # nothing half-started

    def test_configured_admin_and_env_file(self):
        s = Server()
        self.addCleanup(s.cleanup)
        with open(os.path.join(s.dir, ".env"), "w") as f:
            f.write("DEFAULT_ADMIN_NAME=boss\nDEFAULT_ADMIN_PASSWORD=from-env-file\nACCESS_TOKEN_VALIDITY_TIME=5\n")
        s.extra_env = {"DEFAULT_ADMIN_PASSWORD": "from-environment"}
        s.start()
        self.assertIsNone(s.admin_password)
        token = s.login("boss", "from-environment")  # environment wins over .env
        import base64, json as j
        claims = j.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        self.assertEqual(claims["exp"] - claims["iat"], 300)
        self.assertEqual(claims["user_id"], "0")
        self.assertEqual(claims["pwv"], 0)
        s.stop()


if __name__ == "__main__":
    main()
