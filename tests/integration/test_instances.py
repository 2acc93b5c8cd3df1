"""Several server instances on one database: on PostgreSQL (the postgres suite), and two
servers on one SQLite file (what an instance keeps between requests must follow changes
made by the other, or by any client of the file)."""
import concurrent.futures
import os
import signal
import time
import unittest

from rtplib import Mosquitto, Server, main, on_postgres, shared_postgres

KEY = "a shared signing key of more than 32 bytes for both"


class ChangesSeenByEveryInstance:
    """The token check keeps users between requests; a change made through one instance, or
    straight in the database, must count on the other instance at its very next request."""

    def pair(self):
        raise NotImplementedError

    def test_two_instances_never_remove_the_last_admins_at_once(self):
        a, b = self.pair()
        admin = a.login("admin", a.admin_password)
        last = "The user ({}) is the only registered admin and therefore cannot be deleted."
        for rnd in range(20):
            ids = {}
            for name in (f"x{rnd}", f"y{rnd}"):
                r = a.request("POST", "/auth/users", token=admin, json_body={
                    "login_name": name, "first_name": "A", "last_name": "B", "user_type": "Admin"})
                self.assertEqual(r.status, 200, r)
                ids[name] = r.json["user"]["user_id"]
            tokens = {}
            for name, uid in ids.items():
                pw = a.request("PUT", f"/auth/users/{uid}", token=admin, json_body={"password": "pw of " + name})
                self.assertEqual(pw.status, 200, pw)
                tokens[name] = a.login(name, "pw of " + name)
            # only x and y are admins now
            for uid in [u for (u,) in a.db("SELECT user_id FROM users WHERE user_type = 'Admin'") if u not in ids.values()]:
                r = a.request("PUT", f"/auth/users/{uid}", token=tokens[f"x{rnd}"], json_body={"user_type": "User"})
                self.assertEqual(r.status, 200, r)
                self.assertNotIn("errors", r.json)
            x, y = ids[f"x{rnd}"], ids[f"y{rnd}"]
            if rnd % 2 == 0:  # each instance deletes the other admin
                calls = [(a, "DELETE", f"/auth/users/{y}", tokens[f"x{rnd}"], None),
                         (b, "DELETE", f"/auth/users/{x}", tokens[f"y{rnd}"], None)]
            else:             # each instance demotes the other admin
                calls = [(a, "PUT", f"/auth/users/{y}", tokens[f"x{rnd}"], {"user_type": "User"}),
                         (b, "PUT", f"/auth/users/{x}", tokens[f"y{rnd}"], {"user_type": "User"})]
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(lambda c: c[0].request(c[1], c[2], token=c[3], json_body=c[4]), calls))
            admins = a.db("SELECT COUNT(*) FROM users WHERE user_type = 'Admin'")[0][0]
            self.assertEqual(admins, 1, (rnd, answers))
            # exactly one change went through; the other was refused: 409 (or, for a demotion, the
            # field error) when both were decided at once, 403 when its caller was no admin any more
            done = [r for r in answers if r.status == 200 and "errors" not in r.json]
            self.assertEqual(len(done), 1, answers)
            for r in answers:
                if r is done[0]:
                    continue
                if r.status == 409:
                    self.assertIn(r.json["errors"][0], [last.format(f"x{rnd}"), last.format(f"y{rnd}")])
                elif r.status == 200:
                    self.assertRegex(r.json["errors"][0], "is the last registered admin in the database")
                else:
                    self.assertEqual(r.status, 403, r)
            admin = a.login(*next((n, "pw of " + n) for n, uid in ids.items()
                                  if a.db("SELECT user_type FROM users WHERE user_id = ?", (uid,)) == [("Admin",)]))

    def test_changes_through_one_instance_count_at_once_on_the_other(self):
        a, b = self.pair()
        admin = a.login("admin", a.admin_password)
        r = a.request("POST", "/auth/users", token=admin, json_body={
            "login_name": "moved", "first_name": "M", "last_name": "O", "user_type": "User"})
        self.assertEqual(r.status, 200, r)
        uid, pw = r.json["user"]["user_id"], r.json["user"]["temporary_password"]
        self.assertEqual(a.request("POST", "/file/import", token=admin,
                                   body=b"[PROCESS_VARIABLE];pv_string=Exp:M:PV").status, 200)
        token = a.login("moved", pw)
        for _ in range(3):  # read, then kept
            r = b.request("GET", "/auth/users/current", token=token)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["user"]["experiment_urls"], [])
            self.assertEqual(r.json["user"]["user_type"], "User")

        r = b.request("GET", "/experiments/Exp", token=token)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json, {"errors": ["Only users that are assigned to the experiment and admins can access it."]})

        # assignment on a → b's next answers show it and let the user in
        r = a.request("PUT", "/experiments/Exp", token=admin, json_body={"users_to_add": [uid]})
        self.assertEqual(r.status, 200, r)
        r = b.request("GET", "/auth/users/current", token=token)
        self.assertEqual([u.rsplit("/", 2)[-2:] for u in r.json["user"]["experiment_urls"]], [["experiments", "Exp"]], r)
        self.assertEqual(b.request("GET", "/experiments/Exp", token=token).status, 200)
        self.assertEqual(b.request("GET", "/experiments/pvs/Exp:M:PV", token=token).status, 200)
        # removed on a → refused on b
        r = a.request("PUT", "/experiments/Exp", token=admin, json_body={"users_to_remove": [uid]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(b.request("GET", "/experiments/pvs/Exp:M:PV", token=token).status, 403)
        self.assertEqual(a.request("PUT", "/experiments/Exp", token=admin, json_body={"users_to_add": [uid]}).status, 200)
        self.assertEqual(b.request("GET", "/experiments/Exp", token=token).status, 200)
        # deleting the experiment on a removes the assignment on b
        self.assertEqual(a.request("DELETE", "/experiments/Exp", token=admin).status, 200)
        self.assertEqual(b.request("GET", "/auth/users/current", token=token).json["user"]["experiment_urls"], [])
        self.assertEqual(b.request("GET", "/experiments/Exp", token=token).status, 404)
        # promotion on a → admin-only endpoints open on b
        self.assertEqual(b.request("GET", "/auth/users", token=token).status, 403)
        self.assertEqual(a.request("PUT", f"/auth/users/{uid}", token=admin, json_body={"user_type": "Admin"}).status, 200)
        self.assertEqual(b.request("GET", "/auth/users", token=token).status, 200)
        self.assertEqual(a.request("PUT", f"/auth/users/{uid}", token=admin, json_body={"user_type": "User"}).status, 200)
        self.assertEqual(b.request("GET", "/auth/users", token=token).status, 403)

        # a new password set on a ends the old token on b
        r = a.request("PUT", f"/auth/users/{uid}", token=admin, json_body={"password": "a new password"})
        self.assertEqual(r.status, 200, r)
        r = b.request("GET", "/auth/users/current", token=token)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json, {"errors": ["The access-token sent is invalid or no longer accepted."]})

        # deleting on a ends the new token on b
        token = b.login("moved", "a new password")
        self.assertEqual(b.request("GET", "/auth/users/current", token=token).status, 200)
        self.assertEqual(a.request("DELETE", f"/auth/users/{uid}", token=admin).status, 200)
        r = b.request("GET", "/auth/users/current", token=token)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json, {"errors": ["The access-token sent is invalid or no longer accepted."]})
        b.stop()
        a.stop()

    def test_process_variables_and_experiments_changed_elsewhere_are_read_again(self):
        a, b = self.pair()
        admin = a.login("admin", a.admin_password)
        admin_b = b.login("admin", a.admin_password)
        self.assertEqual(a.request("POST", "/file/import", token=admin,
                                   body=b"[PROCESS_VARIABLE];pv_string=Kept:M:PV;human_readable_name=First").status, 200)

        def pv_on_b(name):
            return b.request("GET", f"/experiments/pvs/{name}", token=admin_b)

        def pvs_of_experiment_on_b():
            r = b.request("GET", "/experiments/Kept", token=admin_b)
            self.assertEqual(r.status, 200, r)
            return sorted(u.rsplit("/", 1)[-1] for u in r.json["experiment"]["process_variable_urls"])

        for _ in range(2):  # read, then kept
            self.assertEqual(pv_on_b("Kept:M:PV").json["process_variable"]["human_readable_name"], "First")
            self.assertEqual(pvs_of_experiment_on_b(), ["Kept:M:PV"])
        r = a.request("PUT", "/experiments/pvs/Kept:M:PV", token=admin, json_body={"human_readable_name": "Second"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(pv_on_b("Kept:M:PV").json["process_variable"]["human_readable_name"], "Second")
        r = a.request("POST", "/experiments/pvs", token=admin, json_body={"pv_string": "Kept:M:Other"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(pvs_of_experiment_on_b(), ["Kept:M:Other", "Kept:M:PV"])
        r = a.request("PUT", "/experiments/pvs/Kept:M:PV", token=admin, json_body={"pv_string": "Kept:M:Renamed"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(pv_on_b("Kept:M:PV").status, 404)
        self.assertEqual(pv_on_b("Kept:M:Renamed").json["process_variable"]["human_readable_name"], "Second")
        a.db("UPDATE process_variables SET human_readable_name = 'Straight' WHERE pv_string = 'Kept:M:Renamed'")
        self.assertEqual(pv_on_b("Kept:M:Renamed").json["process_variable"]["human_readable_name"], "Straight")
        self.assertEqual(a.request("DELETE", "/experiments/Kept", token=admin).status, 200)
        self.assertEqual(pv_on_b("Kept:M:Renamed").status, 404)
        self.assertEqual(b.request("GET", "/experiments/Kept", token=admin_b).status, 404)
        b.stop()
        a.stop()

    def test_kept_lists_follow_changes_from_anywhere_at_the_very_next_request(self):
        a, b = self.pair()
        admin = a.login("admin", a.admin_password)
        admin_b = b.login("admin", a.admin_password)

        def lists_on_b():
            out = {}
            for path, key in [("/experiments", "experiments"), ("/experiments/pvs", "process_variables"),
                              ("/auth/users", "users")]:
                r = b.request("GET", path, token=admin_b)
                self.assertEqual(r.status, 200, r)
                out[key] = r.json[key]
            return out

        r = a.request("POST", "/experiments/pvs", token=admin, json_body={"pv_string": "List:M:One"})
        self.assertEqual(r.status, 200, r)
        first = lists_on_b()
        self.assertEqual(lists_on_b(), first)  # kept: the same answer
        self.assertEqual([e["short_id"] for e in first["experiments"]], ["List"])
        # a change through the other instance: seen by the very next list request
        r = a.request("POST", "/experiments/pvs", token=admin, json_body={"pv_string": "List:M:Two",
                                                                          "human_readable_name": "Two"})
        self.assertEqual(r.status, 200, r)
        now = lists_on_b()
        self.assertEqual(sorted(p["pv_string"] for p in now["process_variables"]), ["List:M:One", "List:M:Two"])
        self.assertEqual(len(now["experiments"][0]["process_variable_urls"]), 2)
        r = a.request("POST", "/auth/users", token=admin, json_body={
            "login_name": "lister", "first_name": "L", "last_name": "I", "user_type": "User"})
        self.assertIn("lister", [u["login_name"] for u in lists_on_b()["users"]])
        # straight in the database: the same
        a.db("UPDATE process_variables SET human_readable_name = 'Straight' WHERE pv_string = 'List:M:Two'")
        a.db("UPDATE experiments SET human_readable_name = 'Renamed' WHERE short_id = 'List'")
        a.db("UPDATE users SET first_name = 'Lee' WHERE login_name = 'lister'")
        now = lists_on_b()
        self.assertEqual({p["pv_string"]: p["human_readable_name"] for p in now["process_variables"]}["List:M:Two"],
                         "Straight")
        self.assertEqual(now["experiments"][0]["human_readable_name"], "Renamed")
        self.assertEqual({u["login_name"]: u["first_name"] for u in now["users"]}["lister"], "Lee")
        r = b.request("GET", "/experiments/List", token=admin_b)
        self.assertEqual(r.json["experiment"]["human_readable_name"], "Renamed")
        a.db("UPDATE experiments SET human_readable_name = 'Again' WHERE short_id = 'List'")
        r = b.request("GET", "/experiments/List", token=admin_b)
        self.assertEqual(r.json["experiment"]["human_readable_name"], "Again")
        b.stop()
        a.stop()

    def test_a_change_made_straight_in_the_database_counts_at_once(self):
        a, b = self.pair()
        admin = a.login("admin", a.admin_password)
        r = a.request("POST", "/auth/users", token=admin, json_body={
            "login_name": "direct", "first_name": "D", "last_name": "I", "user_type": "User"})
        uid, pw = r.json["user"]["user_id"], r.json["user"]["temporary_password"]
        token = a.login("direct", pw)
        for s in (a, b):
            for _ in range(2):
                self.assertEqual(s.request("GET", "/auth/users/current", token=token).status, 200)
        a.db("UPDATE users SET password_version = password_version + 1 WHERE user_id = ?", (uid,))
        self.assertEqual(a.db("SELECT password_version FROM users WHERE user_id = ?", (uid,)), [(1,)])
        for s in (a, b):
            r = s.request("GET", "/auth/users/current", token=token)
            self.assertEqual(r.status, 403, r)
        b.stop()
        a.stop()



@unittest.skipIf(on_postgres(), "two servers on one SQLite file")
class SqliteInstances(ChangesSeenByEveryInstance, unittest.TestCase):
    def pair(self):
        a = Server(env={"SECRET_KEY": KEY})
        self.addCleanup(a.cleanup)
        a.start()
        b = Server(env={"SECRET_KEY": KEY}, args=["--database", "sqlite:///" + a.db_path()])
        self.addCleanup(b.cleanup)
        b.start()
        return a, b


@unittest.skipUnless(on_postgres(), "several instances share a PostgreSQL database")
class Instances(ChangesSeenByEveryInstance, unittest.TestCase):
    def pair(self):
        return self.a, self.second()

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

    def test_requests_waiting_together_share_a_read_and_see_every_change_before_them(self):
        """The stamp fence: concurrent requests share one change-counter read, sent after they
        arrived; a change committed before a request arrived is seen by it, whatever was kept."""
        from concurrent.futures import ThreadPoolExecutor
        b = self.second()
        admin = self.a.login()
        uid = self.a.request("POST", "/auth/users", token=admin, json_body={
            "login_name": "fenced", "first_name": "Before", "last_name": "F", "user_type": "User"}).json["user"]["user_id"]

        def names(server, n=32):
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda _: server.request("GET", f"/auth/users/{uid}", token=admin), range(n)))
            self.assertEqual({r.status for r in answers}, {200})
            return {r.json["user"]["first_name"] for r in answers}

        for round_ in range(5):
            self.assertEqual(names(b), {"Before" if round_ == 0 else f"After {round_ - 1}"})
            self.a.db("UPDATE users SET first_name = %s WHERE user_id = %s", (f"After {round_}", uid))
            self.assertEqual(names(b), {f"After {round_}"})  # every one of them, on the other instance
        self.assertEqual(b.request("GET", "/auth/users/current", token=admin).status, 200)

    def test_the_shared_read_survives_losing_its_connection(self):
        token = self.a.login()
        self.assertEqual(self.a.request("GET", "/experiments", token=token).status, 200)
        # the fence's own connection ends: requests are still answered (each then reads the counter
        # itself) and see a change made meanwhile
        self.a.db("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE application_name = 'realtimeplot-server change counter'")
        self.a.db("INSERT INTO experiments (short_id, human_readable_name) VALUES ('Meanwhile', 'M')")
        for _ in range(3):
            r = self.a.request("GET", "/experiments", token=token)
            self.assertEqual(r.status, 200, r)
            self.assertIn("Meanwhile", [e["short_id"] for e in r.json["experiments"]])
        self.a.stop()

    def test_a_hung_shared_read_holds_requests_for_seconds_not_forever(self):
        import signal
        token = self.a.login()
        self.assertEqual(self.a.request("GET", "/experiments", token=token).status, 200)
        rows = self.a.db("SELECT pid FROM pg_stat_activity WHERE application_name = 'realtimeplot-server change counter'")
        self.assertEqual(len(rows), 1, rows)
        pid = rows[0][0]
        os.kill(pid, signal.SIGSTOP)  # its backend answers nothing, and says nothing either
        self.addCleanup(os.kill, pid, signal.SIGCONT)
        self.a.db("INSERT INTO experiments (short_id, human_readable_name) VALUES ('Meanwhile', 'M')")
        start = time.monotonic()
        r = self.a.request("GET", "/experiments", token=token, timeout=30)
        self.assertEqual(r.status, 200, r)
        self.assertIn("Meanwhile", [e["short_id"] for e in r.json["experiments"]])
        self.assertLess(time.monotonic() - start, 15)
        self.assertIn("the shared change-counter read is off", self.a.stderr())
        for _ in range(3):  # and the requests after it do not wait
            self.assertEqual(self.a.request("GET", "/experiments", token=token, timeout=5).status, 200)
        self.a.stop()

    def test_database_restart_is_answered_with_503_and_recovered(self):
        token = self.a.login()
        for _ in range(2):  # the user is kept between requests now
            self.assertEqual(self.a.request("GET", "/auth/users/current", token=token).status, 200)
        pg = shared_postgres()
        pg.stop()
        r = self.a.request("GET", "/experiments", token=token)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json, {"errors": ["The database is not available."]})
        # nothing kept is trusted while changes cannot be heard of
        r = self.a.request("GET", "/auth/users/current", token=token)
        self.assertEqual(r.status, 503, r)
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
