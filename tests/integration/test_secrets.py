"""Secrets in the Secret Service (gnome-keyring on a private bus), and the fallback without one."""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
import unittest

from rtplib import PrivateBus, Server, main, on_postgres, shared_postgres, SERVER

RTPCTL = os.path.join(os.path.dirname(os.path.abspath(SERVER)), "rtpctl")


def jwt(key, claims):
    b = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b(json.dumps(claims).encode())
    sig = b(hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


class Keyring(unittest.TestCase):
    def setUp(self):
        self.bus = PrivateBus()
        self.addCleanup(self.bus.cleanup)
        home = os.path.join(self.bus.dir, "home")
        os.makedirs(os.path.join(home, "run"), mode=0o700)
        self.env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=self.bus.address, HOME=home,
                        XDG_DATA_HOME=os.path.join(home, "data"), XDG_RUNTIME_DIR=os.path.join(home, "run"))
        self.keyring = subprocess.Popen(["gnome-keyring-daemon", "--unlock", "--components=secrets", "--foreground"],
                                        env=self.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, text=True)
        self.keyring.stdin.write("non-empty test password")  # an empty one makes it want a prompt
        self.keyring.stdin.close()
        self.addCleanup(self.stop_keyring)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = subprocess.run(["gdbus", "call", "--session", "--dest", "org.freedesktop.DBus", "--object-path",
                                "/org/freedesktop/DBus", "--method", "org.freedesktop.DBus.NameHasOwner",
                                "org.freedesktop.secrets"], env=self.env, capture_output=True, text=True)
            if "true" in r.stdout:
                return
            time.sleep(0.05)
        raise AssertionError("gnome-keyring did not start")

    def stop_keyring(self):
        self.keyring.terminate()
        self.keyring.wait(timeout=30)

    def ctl(self, *args, input=None):
        return subprocess.run([RTPCTL, *args], env=self.env, capture_output=True, text=True, input=input, timeout=60)

    def test_secrets_from_the_keyring(self):
        self.assertEqual(self.ctl("secret", "set", "SECRET_KEY", input="key-from-the-keyring-0123456789abcdef\n").returncode, 0)
        self.assertEqual(self.ctl("secret", "set", "DEFAULT_ADMIN_PASSWORD", input="keyring admin pw").returncode, 0)
        r = self.ctl("secret", "set", "NOT_A_SECRET", input="x")
        self.assertEqual(r.returncode, 1)
        self.assertIn("is not a secret the server reads", r.stderr)
        s = Server(env={"DBUS_SESSION_BUS_ADDRESS": self.bus.address, "DEFAULT_ADMIN_PASSWORD": "from the environment",
                        "SECRET_KEY": "from the environment"}, args=["--bus", "none"])
        self.addCleanup(s.cleanup)
        s.start()
        s.login("admin", "keyring admin pw")
        now = int(time.time())
        token = jwt("key-from-the-keyring-0123456789abcdef", {"user_id": "0", "iat": now, "exp": now + 60, "pwv": 0})
        self.assertEqual(s.request("GET", "/auth/users/current", token=token).status, 200)
        self.assertFalse(os.path.exists(os.path.join(s.state, "secret_key")))
        if on_postgres():
            self.assertEqual(s.db("SELECT COUNT(*) FROM settings"), [(0,)])
        self.assertIn("SECRET_KEY comes from the keyring", s.stderr())
        self.assertNotIn("key-from-the-keyring", s.stderr())  # never logged
        s.stop()


    @unittest.skipUnless(on_postgres(), "a PostgreSQL role with a password")
    def test_database_password_from_the_keyring(self):
        pg = shared_postgres()
        if not pg.sql("postgres", "SELECT 1 FROM pg_roles WHERE rolname = 'rtp_pw'"):
            pg.sql("postgres", "CREATE ROLE rtp_pw LOGIN PASSWORD 'db secret'")
        name = pg.new_database()
        pg.sql("postgres", f"ALTER DATABASE {name} OWNER TO rtp_pw")
        uri = f"postgresql://rtp_pw@127.0.0.1:{pg.port}/{name}"
        env = {"DBUS_SESSION_BUS_ADDRESS": self.bus.address}
        without = Server(env=env, args=["--bus", "none", "--database", uri])
        self.addCleanup(without.cleanup)
        without.start(expect_ok=False)
        self.assertEqual(without.proc.wait(timeout=60), 1)
        self.assertIn("Cannot open the database", without.stderr())
        self.assertEqual(self.ctl("secret", "set", "RTP_DATABASE_PASSWORD", input="db secret").returncode, 0)
        s = Server(env=env, args=["--bus", "none", "--database", uri])
        self.addCleanup(s.cleanup)
        s.start()
        s.login()
        self.assertIn("RTP_DATABASE_PASSWORD comes from the keyring", s.stderr())
        self.assertNotIn("db secret", s.stderr())
        s.stop()


class NoSecretService(unittest.TestCase):
    def check_fallback(self, env):
        s = Server(env=env, args=["--bus", "none"])
        self.addCleanup(s.cleanup)
        s.start()
        self.assertIn("no Secret Service reachable", s.stderr())
        if on_postgres():
            self.assertEqual(len(s.db("SELECT value FROM settings WHERE name = 'signing_key'")), 1)
        else:
            self.assertEqual(os.stat(os.path.join(s.state, "secret_key")).st_mode & 0o777, 0o600)
        s.login()
        s.stop()

    def test_bus_without_secret_service(self):
        bus = PrivateBus()
        self.addCleanup(bus.cleanup)
        self.check_fallback({"DBUS_SESSION_BUS_ADDRESS": bus.address})

    def test_no_bus_at_all(self):
        self.check_fallback({"DBUS_SESSION_BUS_ADDRESS": "disabled:"})


if __name__ == "__main__":
    main()
