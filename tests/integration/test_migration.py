"""Taking over a site of the original service: its SQLite file is upgraded in place on first
start (a copy kept as <file>.pre-migration.bak), or copied with --migrate-from into the
configured database (SQLite here, PostgreSQL in the postgres suite)."""
import hashlib
import os
import sqlite3
import subprocess
import unittest

from rtplib import Server, main, on_postgres, shared_postgres, SERVER

SALT = "site-salt"


def md5(password):
    return hashlib.md5((SALT + password).encode()).hexdigest()


def make_old_database(path):
    """The original service's layout (Flask-SQLAlchemy), with no schema_version."""
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE user (user_id VARCHAR(50) PRIMARY KEY, login_name VARCHAR(100) UNIQUE NOT NULL,
            first_name VARCHAR(100), last_name VARCHAR(100), email VARCHAR(100), password_hash VARCHAR(100),
            user_type VARCHAR(10), preferred_language VARCHAR(10));
        CREATE TABLE experiment (short_id VARCHAR(100) PRIMARY KEY, human_readable_name VARCHAR(100));
        CREATE TABLE process_variable (pv_string VARCHAR(100) PRIMARY KEY, human_readable_name VARCHAR(100),
            experiment_short_id VARCHAR(100) REFERENCES experiment (short_id), available_for_mqtt_publish BOOLEAN,
            default_threshold_min INTEGER, default_threshold_max INTEGER);
        CREATE TABLE users_to_experiments (user_id VARCHAR(50) REFERENCES user (user_id),
            experiment_short_id VARCHAR(100) REFERENCES experiment (short_id));
        CREATE TABLE subscription (id INTEGER PRIMARY KEY, user_id VARCHAR(50) REFERENCES user (user_id),
            pv_string VARCHAR(100) REFERENCES process_variable (pv_string), email VARCHAR(100),
            threshold_min INTEGER, threshold_max INTEGER);
    """)
    con.executemany("INSERT INTO user VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
        ("0", "admin", "Site", "Admin", None, md5("old admin pw"), "admin", "en"),
        ("b7c1e7a2-1111-4c1b-9f00-000000000001", "bob", "Bob", "Müller", "bob@lab.org", md5("bobs pw"), "user", "de"),
    ])
    con.executemany("INSERT INTO experiment VALUES (?, ?)", [("Test", "Test rig"), ("Other", None)])
    con.executemany("INSERT INTO process_variable VALUES (?, ?, ?, ?, ?, ?)", [
        ("Test:M1:Fan", "Fan; speed", "Test", 1, 0, 1200),
        ("Test:M1:Temp", None, "Test", 0, None, None),
        ("Other:X", "x", "Other", 0, -5, None),
    ])
    con.execute("INSERT INTO users_to_experiments VALUES (?, ?)", ("b7c1e7a2-1111-4c1b-9f00-000000000001", "Test"))
    con.execute("INSERT INTO subscription VALUES (1, ?, ?, ?, ?, ?)",
                ("b7c1e7a2-1111-4c1b-9f00-000000000001", "Test:M1:Fan", "bob@lab.org", 10, 1100))
    con.commit()
    con.close()


class Takeover(unittest.TestCase):
    def check_site(self, s):
        """Everything of the old site, seen through the new server."""
        admin = s.login("admin", "old admin pw")
        bob_token = s.login("bob", "bobs pw")
        bob = s.request("GET", "/auth/users/current", token=bob_token).json["user"]
        self.assertEqual(bob, {"user_id": "b7c1e7a2-1111-4c1b-9f00-000000000001", "login_name": "bob", "first_name": "Bob",
                               "last_name": "Müller", "email": "bob@lab.org", "user_type": "User", "preferred_language": "de",
                               "experiment_urls": ["/experiments/Test"], "url": "/auth/users/b7c1e7a2-1111-4c1b-9f00-000000000001"})
        self.assertEqual(s.request("GET", "/auth/users/0", token=admin).json["user"]["user_type"], "Admin")
        pvs = {p["pv_string"]: p for p in s.request("GET", "/experiments/pvs", token=admin).json["process_variables"]}
        self.assertEqual(pvs["Test:M1:Fan"], {"pv_string": "Test:M1:Fan", "human_readable_name": "Fan; speed",
                                              "experiment_short_id": "Test", "available_for_mqtt_publish": True,
                                              "default_threshold_min": 0, "default_threshold_max": 1200})
        self.assertEqual(pvs["Test:M1:Temp"]["default_threshold_min"], None)
        self.assertEqual(pvs["Other:X"]["default_threshold_min"], -5)
        exps = {e["short_id"]: e for e in s.request("GET", "/experiments", token=admin).json["experiments"]}
        self.assertEqual(exps["Test"]["human_readable_name"], "Test rig")
        self.assertEqual(exps["Test"]["user_urls"], ["/auth/users/b7c1e7a2-1111-4c1b-9f00-000000000001"])
        self.assertEqual(s.request("GET", "/email/subscriptions", token=bob_token).json["subscriptions"], [
            {"user_id": "b7c1e7a2-1111-4c1b-9f00-000000000001", "pv_string": "Test:M1:Fan", "email": "bob@lab.org",
             "threshold_min": 10, "threshold_max": 1100}])
        # the MD5 hashes were replaced by argon2id at these logins
        for (h,) in s.db("SELECT password_hash FROM users"):
            self.assertTrue(h.startswith("$argon2id$"), h)

    @unittest.skipIf(on_postgres(), "the in-place upgrade is of SQLite files")
    def test_upgrade_in_place(self):
        s = Server(env={"PASSWORD_SALT": SALT})
        self.addCleanup(s.cleanup)
        os.makedirs(s.dir, exist_ok=True)
        old = os.path.join(s.dir, "app.db")
        make_old_database(old)
        with open(old, "rb") as f:
            original = f.read()
        s.extra_env["SQLALCHEMY_DATABASE_URI"] = "sqlite:///app.db"  # relative: the working directory, as the original
        s.start()
        self.assertIsNone(s.admin_password)  # the site's admin is kept, none is created
        with open(old + ".pre-migration.bak", "rb") as f:
            self.assertEqual(f.read(), original)
        s.db_path = lambda: old
        tables = {t for (t,) in s.db("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.assertNotIn("user", tables)
        self.assertIn("users", tables)
        self.check_site(s)
        s.stop()
        self.assertIn("upgraded the original service's database in place: 2 users, 2 experiments, 3 process variables, "
                      "1 assignments, 1 subscriptions", s.stderr())
        # a second start does not migrate again
        s2 = Server(workdir=s.dir, env=s.extra_env)
        s2.start()
        s2.db_path = lambda: old
        s2.login("bob", "bobs pw")
        s2.stop()
        self.assertEqual(s2.stderr().count("upgraded the original service's database in place"), 1)  # both runs log here: only the first upgraded
        with open(old + ".pre-migration.bak", "rb") as f:
            self.assertEqual(f.read(), original)

    def test_migrate_from(self):
        s = Server(env={"PASSWORD_SALT": SALT})
        self.addCleanup(s.cleanup)
        os.makedirs(s.dir, exist_ok=True)
        old = os.path.join(s.dir, "site.db")
        make_old_database(old)
        target = []
        if on_postgres():
            s.pg_database = shared_postgres().new_database()
            with open(os.path.join(s.dir, "pg_database"), "w") as f:
                f.write(s.pg_database)
            target = ["--database", shared_postgres().uri(s.pg_database)]
        with open(old, "rb") as f:
            before = f.read()
        r = subprocess.run([SERVER, "--state-dir", s.state, "--migrate-from", old, *target], env=s.environment(),
                           cwd=s.dir, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(old, "rb") as f:
            self.assertEqual(f.read(), before)  # the old service may still run on it: not a byte changed (WAL switch, change counter)
        self.assertEqual(sorted(os.listdir(s.dir)).count("site.db-wal"), 0)
        self.assertIn("Copied 2 users, 2 experiments, 3 process variables, 1 assignments, 1 subscriptions", r.stdout)
        self.assertFalse(os.path.exists(old + ".pre-migration.bak"))  # the source is only read
        s.start()
        self.check_site(s)
        s.stop()
        # into a database that has the data already: refused, nothing changed
        r = subprocess.run([SERVER, "--state-dir", s.state, "--migrate-from", old, *target], env=s.environment(),
                           cwd=s.dir, capture_output=True, text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("nothing was changed", r.stderr)
        r = subprocess.run([SERVER, "--state-dir", s.state, "--migrate-from", "/nonexistent.db"], env=s.environment(),
                           cwd=s.dir, capture_output=True, text=True, timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("is not a file", r.stderr)


if __name__ == "__main__":
    main()
