"""Several server instances on one PostgreSQL database (the postgres suite only)."""
import concurrent.futures
import os
import signal
import time
import unittest

from rtplib import Mosquitto, Server, main, on_postgres, shared_postgres


@unittest.skipUnless(on_postgres(), "several instances share a PostgreSQL database")
class Instances(unittest.TestCase):
    def setUp(self):
        self.a = Server()
        self.addCleanup(self.a.cleanup)
        self.a.start()

    def second(self, **env):
        b = Server(env=env)
        self.addCleanup(b.cleanup)
        os.makedirs(b.dir, exist_ok=True)
        with open(os.path.join(b.dir, "pg_database"), "w") as f:
            f.write(self.a.pg_database)  # the same database as the first
        b.start()
        return b

    def test_tokens_work_on_every_instance(self):
        b = self.second()
        token = self.a.login()
        self.assertEqual(b.request("GET", "/auth/users/current", token=token).status, 200)
        self.assertEqual(self.a.request("GET", "/auth/users/current", token=b.login("admin", self.a.admin_password)).status, 200)
        self.assertEqual(len(self.a.db("SELECT value FROM settings WHERE name = 'signing_key'")), 1)
        self.assertFalse(os.path.exists(os.path.join(self.a.state, "secret_key")))
        b.stop()
        self.a.stop()

    def test_create_races_end_in_one_success(self):
        b = self.second()
        token = self.a.login()
        servers = [self.a, b]

        def create_user(i):
            return servers[i % 2].request("POST", "/auth/users", token=token, json_body={
                "login_name": "racer", "first_name": "R", "last_name": "C", "user_type": "User"}).status

        def create_pv(i):
            return servers[i % 2].request("POST", "/experiments/pvs", token=token, json_body={"pv_string": "Race:PV"}).status

        for fn, table, where in [(create_user, "users", "login_name = 'racer'"), (create_pv, "process_variables", "pv_string = 'Race:PV'")]:
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                statuses = list(pool.map(fn, range(100)))
            self.assertEqual(statuses.count(200), 1, statuses)
            self.assertEqual(statuses.count(409), 99, statuses)
            self.assertEqual(self.a.db(f"SELECT COUNT(*) FROM {table} WHERE {where}"), [(1,)])
        b.stop()
        self.a.stop()

    def test_one_instance_runs_the_outbox_and_another_takes_over(self):
        broker = Mosquitto().start()
        self.addCleanup(broker.cleanup)
        env = {"MQTT_SERVER_URL": f"127.0.0.1:{broker.port}"}
        a = Server(env=env)
        self.addCleanup(a.cleanup)
        os.makedirs(a.dir, exist_ok=True)
        with open(os.path.join(a.dir, "pg_database"), "w") as f:
            f.write(self.a.pg_database)
        a.start()
        leader_line = "now runs the jobs of one instance only"
        deadline = time.monotonic() + 30
        while leader_line not in a.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertIn(leader_line, a.stderr())
        b = self.second(**env)
        time.sleep(6)  # longer than the outbox timer: b tried, and is not the leader
        self.assertNotIn(leader_line, b.stderr())
        a.stop(sig=signal.SIGKILL, expect_status=None)
        deadline = time.monotonic() + 30
        while leader_line not in b.stderr() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertIn(leader_line, b.stderr())
        b.stop()
        self.a.stop()

    def test_database_restart_is_answered_with_503_and_recovered(self):
        token = self.a.login()
        pg = shared_postgres()
        pg.stop()
        r = self.a.request("GET", "/experiments", token=token)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json, {"errors": ["The database is not available."]})
        pg.start()
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            status = self.a.request("POST", "/experiments/pvs", token=token, json_body={"pv_string": "After:Restart"}).status
            if status == 200:
                break
            self.assertEqual(status, 503)
            time.sleep(0.3)
        self.assertEqual(status, 200)
        self.assertEqual(self.a.db("SELECT COUNT(*) FROM process_variables"), [(1,)])
        self.a.stop()


if __name__ == "__main__":
    main()
