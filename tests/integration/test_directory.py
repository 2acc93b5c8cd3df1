"""Directory logins against a real slapd (issue "Institute accounts"): rows made from the directory,
groups mapped to the admin role and to experiments, refusals, filter injection, a directory that is
down, hung or without TLS, and the password that only the directory may change."""
import os
import subprocess
import threading
import time
import unittest

import rtplib
from rtplib import Server, Slapd

REFUSED = "The login_name and password combination is not present in the database."
UNAVAILABLE = "The directory service is not available."
DIRECTORY_PASSWORD = "password: The password of a directory account is changed in the directory."


def stderr_of(server):
    with open(server.stderr_path, errors="replace") as f:
        return f.read()


def setUpModule():
    if not Slapd.available():
        raise unittest.SkipTest("slapd (Debian package slapd) is not installed")


class DirectoryTestCase(unittest.TestCase):
    """One slapd with TLS and one server using it with STARTTLS (the default for ldap://)."""

    secure = False
    extra_env = {}

    def setUp(self):
        self.ldap = Slapd().start()
        self.addCleanup(self.ldap.cleanup)
        self.s = Server(env=self.ldap.server_env(secure=self.secure, **self.extra_env))
        self.addCleanup(self.s.cleanup)
        self.s.start()
        self.admin = self.s.login()
        for short_id in ("EXPA", "EXPB", "EXPC"):
            r = self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": f"{short_id}:T"})
            self.assertEqual(r.status, 200, r)

    def tearDown(self):
        self.s.stop()

    def login(self, login, password):
        return self.s.request("POST", "/auth/get_access_token", basic=(login, password))

    def me(self, token):
        r = self.s.request("GET", "/auth/users/current", token=token)
        self.assertEqual(r.status, 200, r)
        return r.json["user"]

    def assertRefused(self, r):
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json, {"errors": [REFUSED]}, r)


class Logins(DirectoryTestCase):
    def test_first_login_creates_the_user_from_the_directory(self):
        r = self.login("alice", "alicepw")
        self.assertEqual(r.status, 200, r)
        user = self.me(r.json["access_token"])
        self.assertEqual(user["login_name"], "alice")
        self.assertEqual((user["first_name"], user["last_name"], user["email"]), ("Alice", "Adams", "alice@lab.test"))
        self.assertEqual(user["user_type"], "Admin")  # member of the admin group
        self.assertEqual(user["experiment_urls"], ["/experiments/EXPA"])
        self.assertEqual(user["source"], "directory")
        self.assertEqual(r.json["user_url"], user["url"])
        rows = self.s.db("SELECT source, directory_dn, password_hash, password_version FROM users WHERE login_name = ?",
                         ("alice",))
        self.assertEqual(rows, [("directory", "uid=alice,ou=people,dc=lab,dc=test", "!directory", 0)])
        # local users stay as they were: no "source" in their JSON
        self.assertNotIn("source", self.me(self.admin))
        # the second login finds the row: still one row
        self.assertEqual(self.login("alice", "alicepw").status, 200)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM users WHERE login_name = ?", ("alice",)), [(1,)])

    def test_attributes_and_groups_are_mapped(self):
        bob = self.me(self.s.login("bob", "bobpw"))
        self.assertEqual(bob["user_type"], "User")
        self.assertEqual(bob["experiment_urls"], ["/experiments/EXPA"])
        dave = self.me(self.s.login("dave", "davepw"))
        self.assertEqual(dave["last_name"], "Dörr")  # UTF-8 from the directory
        self.assertEqual(dave["experiment_urls"], ["/experiments/EXPB"])
        # the assigned user reads their experiment, not the other
        token = self.s.login("bob", "bobpw")
        self.assertEqual(self.s.request("GET", "/experiments/EXPA", token=token).status, 200)
        self.assertEqual(self.s.request("GET", "/experiments/EXPB", token=token).status, 403)

    def test_group_changes_apply_at_the_next_login_and_hand_made_assignments_stay(self):
        bob = self.me(self.s.login("bob", "bobpw"))
        r = self.s.request("PUT", "/experiments/EXPC", token=self.admin, json_body={"users_to_add": [bob["user_id"]]})
        self.assertEqual(r.status, 200, r)
        self.ldap.modify(f"dn: {Slapd.GROUP_A}\nchangetype: modify\ndelete: member\n"
                         f"member: uid=bob,ou=people,{Slapd.SUFFIX}\n\n"
                         f"dn: {Slapd.GROUP_B}\nchangetype: modify\nadd: member\n"
                         f"member: uid=bob,ou=people,{Slapd.SUFFIX}\n\n"
                         f"dn: {Slapd.ADMINS}\nchangetype: modify\nadd: member\n"
                         f"member: uid=bob,ou=people,{Slapd.SUFFIX}\n")
        bob = self.me(self.s.login("bob", "bobpw"))
        self.assertEqual(sorted(bob["experiment_urls"]), ["/experiments/EXPB", "/experiments/EXPC"])
        self.assertEqual(bob["user_type"], "Admin")
        # demoted in the directory: a User again at the next login
        self.ldap.modify(f"dn: {Slapd.ADMINS}\nchangetype: modify\ndelete: member\n"
                         f"member: uid=bob,ou=people,{Slapd.SUFFIX}\n")
        self.assertEqual(self.me(self.s.login("bob", "bobpw"))["user_type"], "User")

    def test_wrong_password_and_unknown_user_get_the_same_answer(self):
        wrong = self.login("alice", "nope")
        unknown = self.login("mallory", "alicepw")
        self.assertRefused(wrong)
        self.assertRefused(unknown)
        self.assertEqual(wrong.raw, unknown.raw)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM users WHERE login_name IN ('alice', 'mallory')"), [(0,)])

    def test_filter_injection_never_matches(self):
        for login in ["*", "al*", "*)(uid=*", "alice)(|(uid=*", "admin)(|(uid=*", "*)(objectClass=*",
                      "alice\\2a", "ålice", "alice ", "(uid=alice)", "x" * 5000]:
            with self.subTest(login=login):
                self.assertRefused(self.login(login, "alicepw"))
        for raw in [b"alice\x00x:alicepw", b"ali\x00:alicepw", b"\xff\xfe:alicepw"]:
            with self.subTest(raw=raw):
                import base64
                r = self.s.request("POST", "/auth/get_access_token",
                                   headers={"Authorization": "Basic " + base64.b64encode(raw).decode()})
                self.assertRefused(r)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM users WHERE source = 'directory'"), [(0,)])

    def test_empty_password_is_refused_before_any_bind(self):
        r = self.login("alice", "")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM users WHERE login_name = 'alice'"), [(0,)])

    def test_a_user_in_no_group_cannot_log_in(self):
        self.assertRefused(self.login("carol", "carolpw"))

    def test_removed_from_the_directory_the_tokens_die(self):
        token = self.s.login("dave", "davepw")
        self.me(token)
        self.ldap.modify(f"dn: {Slapd.GROUP_B}\nchangetype: modify\nreplace: member\n"
                         f"member: uid=alice,ou=people,{Slapd.SUFFIX}\n")
        self.assertRefused(self.login("dave", "davepw"))
        r = self.s.request("GET", "/auth/users/current", token=token)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json, {"errors": ["The access-token sent is invalid or no longer accepted."]})
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM user_experiments ue JOIN users u ON u.user_id = ue.user_id "
                                   "WHERE u.login_name = 'dave'"), [(0,)])
        # gone from the directory altogether: the same
        token = self.s.login("bob", "bobpw")
        self.ldap.modify(f"dn: uid=bob,ou=people,{Slapd.SUFFIX}\nchangetype: delete\n")
        self.assertRefused(self.login("bob", "bobpw"))
        self.assertEqual(self.s.request("GET", "/auth/users/current", token=token).status, 403)

    def test_the_password_is_changed_in_the_directory_only(self):
        token = self.s.login("bob", "bobpw")
        bob = self.me(token)
        r = self.s.request("PUT", "/auth/users/current", token=token, basic=("bob", "bobpw"),
                           json_body={"password": "new-password-1", "first_name": "Robert"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["errors"], [DIRECTORY_PASSWORD])
        self.assertEqual(r.json["user"]["first_name"], "Robert")
        r = self.s.request("PUT", f"/auth/users/{bob['user_id']}", token=self.admin,
                           json_body={"password": "new-password-2"})
        self.assertEqual(r.json["errors"], [DIRECTORY_PASSWORD])
        self.assertRefused(self.login("bob", "new-password-2"))
        self.assertEqual(self.login("bob", "bobpw").status, 200)
        self.assertEqual(self.s.db("SELECT password_hash FROM users WHERE login_name = 'bob'"), [("!directory",)])

    def test_an_admin_may_demote_or_delete_a_directory_user_and_the_next_login_reads_the_directory(self):
        alice = self.me(self.s.login("alice", "alicepw"))
        r = self.s.request("PUT", f"/auth/users/{alice['user_id']}", token=self.admin, json_body={"user_type": "User"})
        self.assertEqual(r.json["user"]["user_type"], "User")
        self.assertEqual(self.me(self.s.login("alice", "alicepw"))["user_type"], "Admin")
        r = self.s.request("DELETE", f"/auth/users/{alice['user_id']}", token=self.admin)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.me(self.s.login("alice", "alicepw"))["login_name"], "alice")

    def test_failed_directory_logins_lock_out_like_local_ones(self):
        codes = [self.login("bob", "wrong").status for _ in range(10)]
        self.assertEqual(codes, [403] * 10)
        r = self.login("bob", "bobpw")
        self.assertEqual(r.status, 429, r)

    def test_local_users_keep_logging_in_locally(self):
        r = self.s.request("POST", "/auth/users", token=self.admin,
                           json_body={"login_name": "svc", "first_name": "S", "last_name": "V", "user_type": "User"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.login("svc", r.json["user"]["temporary_password"]).status, 200)
        # a local login name that the directory also knows: the local password decides
        self.assertRefused(self.login("admin", "alicepw"))

    def test_ready_reports_the_directory(self):
        r = self.s.request("GET", "/ready")
        self.assertEqual(r.json["checks"]["directory"], "ok", r)


class DirectoryDown(DirectoryTestCase):
    def test_stopped_directory_answers_503_while_local_admins_log_in(self):
        self.assertEqual(self.login("alice", "alicepw").status, 200)
        self.ldap.stop()
        r = self.login("alice", "alicepw")
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json, {"errors": [UNAVAILABLE]})
        self.assertEqual(self.login("admin", self.s.admin_password).status, 200)
        time.sleep(5.1)  # the readiness probes are kept 5 s
        r = self.s.request("GET", "/ready")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["checks"]["directory"], "error: not available")
        self.assertNotIn(str(self.ldap.port), r.raw if isinstance(r.raw, str) else r.raw.decode())
        # back: logins work again (the pooled connection is replaced). A slapd just started may not
        # answer within RTP_LDAP_TIMEOUT (2 s) on a loaded machine: 503 until it does, then 200.
        self.ldap.start()
        statuses = []
        deadline = time.monotonic() + 20
        while (not statuses or statuses[-1] != 200) and time.monotonic() < deadline:
            statuses.append(self.login("alice", "alicepw").status)
        self.assertEqual(statuses[-1], 200, statuses)
        self.assertEqual(set(statuses) - {200, 503}, set(), statuses)

    def test_hung_directory_answers_503_within_the_timeout_and_others_are_served(self):
        self.assertEqual(self.login("bob", "bobpw").status, 200)  # a pooled connection exists
        self.ldap.pause()
        self.addCleanup(self.ldap.resume)
        events = []
        results = {}

        def slow_login():
            started = time.monotonic()
            results["login"] = self.login("alice", "alicepw")
            results["elapsed"] = time.monotonic() - started
            events.append("login answered")

        t = threading.Thread(target=slow_login)
        t.start()
        time.sleep(0.3)
        r = self.s.request("GET", "/auth/users/current", token=self.admin)
        self.assertEqual(r.status, 200)
        events.append("other request answered")
        r = self.login("admin", self.s.admin_password)
        self.assertEqual(r.status, 200)
        events.append("local login answered")
        t.join(timeout=30)
        self.assertEqual(events, ["other request answered", "local login answered", "login answered"])
        self.assertEqual(results["login"].status, 503, results["login"])
        self.assertEqual(results["login"].json, {"errors": [UNAVAILABLE]})
        self.assertLess(results["elapsed"], 15)  # bounded by RTP_LDAP_TIMEOUT (2 s), far from hanging
        self.ldap.resume()
        self.assertEqual(self.login("alice", "alicepw").status, 200)


class Ldaps(DirectoryTestCase):
    secure = True

    def test_login_over_ldaps(self):
        self.assertEqual(self.me(self.s.login("bob", "bobpw"))["source"], "directory")


class NoTls(unittest.TestCase):
    """A directory without TLS: STARTTLS (the default) is refused, so is every directory login."""

    def test_starttls_refused_means_503(self):
        ldap = Slapd(tls=False).start()
        self.addCleanup(ldap.cleanup)
        s = Server(env=ldap.server_env())
        self.addCleanup(s.cleanup)
        s.start()
        r = s.request("POST", "/auth/get_access_token", basic=("bob", "bobpw"))
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json, {"errors": [UNAVAILABLE]})
        self.assertIn("STARTTLS", stderr_of(s))
        s.stop()

    def test_plain_text_needs_insecure(self):
        ldap = Slapd(tls=False).start()
        self.addCleanup(ldap.cleanup)
        s = Server(env=ldap.server_env(RTP_LDAP_STARTTLS="0", RTP_LDAP_INSECURE="1"))
        self.addCleanup(s.cleanup)
        s.start()
        self.assertEqual(s.request("POST", "/auth/get_access_token", basic=("bob", "bobpw")).status, 200)
        s.stop()
        self.assertIn("plain text", stderr_of(s))


class BadSettings(unittest.TestCase):
    def start_fails(self, key, **env):
        s = Server(env=env)
        self.addCleanup(s.cleanup)
        s.start(expect_ok=False)
        code = s.proc.wait(timeout=60)
        self.assertNotEqual(code, 0)
        self.assertIn(key, stderr_of(s))

    def test_each_bad_value_stops_the_start_naming_the_key(self):
        base = {"RTP_LDAP_URL": "ldap://127.0.0.1:1", "RTP_LDAP_BASE_DN": "dc=lab,dc=test"}
        self.start_fails("RTP_LDAP_URL", **{**base, "RTP_LDAP_URL": "http://example.org"})
        self.start_fails("RTP_LDAP_URL", **{**base, "RTP_LDAP_URL": "ldap://a:1 ldaps://b:2"})
        self.start_fails("RTP_LDAP_STARTTLS", **{**base, "RTP_LDAP_STARTTLS": "0"})
        self.start_fails("RTP_LDAP_STARTTLS", **{**base, "RTP_LDAP_STARTTLS": "yes"})
        self.start_fails("RTP_LDAP_BASE_DN", **{**base, "RTP_LDAP_BASE_DN": ""})
        self.start_fails("RTP_LDAP_USER_FILTER", **{**base, "RTP_LDAP_USER_FILTER": "(uid=alice)"})
        self.start_fails("RTP_LDAP_EXPERIMENT_GROUPS", **{**base, "RTP_LDAP_EXPERIMENT_GROUPS": "cn=x,dc=lab"})
        self.start_fails("RTP_LDAP_TIMEOUT", **{**base, "RTP_LDAP_TIMEOUT": "0"})
        self.start_fails("RTP_LDAP_CA_FILE", **{**base, "RTP_LDAP_CA_FILE": "/nonexistent/ca.pem"})


if __name__ == "__main__":
    rtplib.main()
