"""Storage faults: a full disk, a read-only database file, SIGKILL in the middle of a write-heavy load.
Each asserts what a user sees (API.md's 503s, reads still served) and that nothing acknowledged is lost."""
import http.client
import os
import random
import resource
import signal
import subprocess
import threading
import time
import unittest

from rtplib import Server, ServerTestCase, main, on_postgres, sqlite_only

CANNOT_STORE = "The database cannot store changes at the moment."
NOBODY = 65534


def ignore_sigxfsz():
    # a write beyond RLIMIT_FSIZE then fails with EFBIG (as on a full disk) instead of killing the server
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def drop_privileges():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


class DiskFull(unittest.TestCase):
    @sqlite_only
    def test_full_disk_answers_503_keeps_data_and_recovers(self):
        s = Server(preexec=ignore_sigxfsz)
        self.addCleanup(s.cleanup)
        s.start()
        admin = s.login()
        self.assertEqual(s.request("POST", "/experiments/pvs", token=admin, json_body={"pv_string": "Disk:kept"}).status, 200)
        before = s.db("SELECT * FROM process_variables")
        # no file of the server may grow any more: the next commit cannot extend the write-ahead log
        size = max(os.path.getsize(os.path.join(s.state, f)) for f in os.listdir(s.state))
        resource.prlimit(s.proc.pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

        r = s.request("POST", "/experiments/pvs", token=admin, json_body={"pv_string": "Disk:new"})
        self.assertEqual((r.status, r.json), (503, {"errors": [CANNOT_STORE]}))
        r = s.request("PUT", "/experiments/pvs/Disk:kept", token=admin, json_body={"human_readable_name": "changed"})
        self.assertEqual((r.status, r.json), (503, {"errors": [CANNOT_STORE]}))
        lines = "[EXPERIMENT];short_id=Big\n" + "".join(f"    [PROCESS_VARIABLE];pv_string=Big:{i}\n" for i in range(2000))
        r = s.request("POST", "/file/import", token=admin, body=lines)
        self.assertEqual((r.status, r.json), (503, {"errors": [CANNOT_STORE]}))
        r = s.request("POST", "/auth/users", token=admin,
                      json_body={"login_name": "newbie", "first_name": "N", "last_name": "B", "user_type": "User"})
        self.assertEqual((r.status, r.json), (503, {"errors": [CANNOT_STORE]}))
        # reads go on, and what was there is unchanged
        r = s.request("GET", "/experiments/pvs/Disk:kept", token=admin)
        self.assertEqual((r.status, r.json["process_variable"]["human_readable_name"]), (200, None))
        self.assertError404(s.request("GET", "/experiments/pvs/Disk:new", token=admin))
        self.assertIn("database cannot store changes", s.stderr())

        # space again: the same requests succeed without a restart
        resource.prlimit(s.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        self.assertEqual(s.request("POST", "/experiments/pvs", token=admin, json_body={"pv_string": "Disk:new"}).status, 200)
        r = s.request("POST", "/file/import", token=admin, body=lines)
        self.assertEqual((r.status, r.json["number_of_process_variables_now_in_database"]), (200, 2002), r)
        s.stop()
        self.assertEqual(s.db("PRAGMA integrity_check"), [("ok",)])
        self.assertEqual(s.db("SELECT * FROM process_variables WHERE pv_string = 'Disk:kept'"), before)
        self.assertEqual(s.db("SELECT COUNT(*) FROM process_variables"), [(2002,)])
        self.assertEqual(s.db("SELECT COUNT(*) FROM users WHERE login_name = 'newbie'"), [(0,)])

    def assertError404(self, r):
        self.assertEqual(r.status, 404, r)


class ReadOnly(unittest.TestCase):
    @sqlite_only
    def test_read_only_database_file_serves_reads_and_refuses_writes(self):
        s = Server()
        self.addCleanup(s.cleanup)
        s.start()
        admin = s.login()
        self.assertEqual(s.request("POST", "/experiments/pvs", token=admin, json_body={"pv_string": "Ro:one"}).status, 200)
        password = s.admin_password
        s.stop()
        before = open(s.db_path(), "rb").read()
        if os.geteuid() == 0:
            # root writes anyway: the server runs unprivileged in its own directory and only the database
            # file belongs to root, mode 0644
            subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", s.dir], check=True)
            os.chmod(s.dir, 0o755)
            os.chown(s.db_path(), 0, 0)
            os.chmod(s.db_path(), 0o644)
            preexec = drop_privileges
        else:
            os.chmod(s.db_path(), 0o444)
            preexec = None

        ro = Server(workdir=s.dir, preexec=preexec)
        ro.start()
        self.addCleanup(ro.stop)
        ro.admin_password = password
        admin = ro.login()
        self.assertIn("is not writable", ro.stderr())
        r = ro.request("GET", "/experiments/pvs/Ro:one", token=admin)
        self.assertEqual(r.status, 200, r)
        r = ro.request("POST", "/experiments/pvs", token=admin, json_body={"pv_string": "Ro:two"})
        self.assertEqual((r.status, r.json), (503, {"errors": [CANNOT_STORE]}))
        r = ro.request("DELETE", "/experiments/pvs/Ro:one", token=admin)
        self.assertEqual((r.status, r.json), (503, {"errors": [CANNOT_STORE]}))
        r = ro.request("GET", "/experiments", token=admin)
        self.assertEqual((r.status, r.json["experiments"][0]["short_id"]), (200, "Ro"), r)
        ro.stop()
        self.assertEqual(open(s.db_path(), "rb").read(), before)


class KilledUnderLoad(ServerTestCase):
    """SIGKILL at random moments while 8 clients create and delete PVs and an admin creates users; after each
    restart the database is intact and every acknowledged write is there (and every acknowledged delete gone)."""

    ROUNDS = 3

    def load(self, token, worker, stop, acked_created, tried_deletes, acked_deleted, acked_users):
        for i in range(5000):  # bounded; the kill ends it long before
            if stop.is_set():
                return
            name = f"Kill:w{worker}-{i}-{self.round}"
            try:
                if worker == 0:
                    r = self.s.request("POST", "/auth/users", token=token, timeout=10,
                                       json_body={"login_name": f"u{i}-{self.round}", "first_name": "F", "last_name": "L",
                                                  "user_type": "User"})
                    if r.status == 200:
                        acked_users.append(r.json["user"]["user_id"])
                    continue
                r = self.s.request("POST", "/experiments/pvs", token=token, json_body={"pv_string": name}, timeout=10)
                if r.status == 200:
                    acked_created.append(name)
                if i % 3 == 2:
                    victim = f"Kill:w{worker}-{i - 1}-{self.round}"
                    tried_deletes.add(victim)  # it may be gone without an answer
                    r = self.s.request("DELETE", "/experiments/pvs/" + victim, token=token, timeout=10)
                    if r.status == 200:
                        acked_deleted.append(victim)
            except (OSError, http.client.HTTPException):
                return  # the server is gone: this request was not acknowledged

    def test_sigkill_during_writes_loses_nothing_acknowledged(self):
        seed = int(os.environ.get("RTP_TEST_SEED", random.randrange(1 << 30)))
        rng = random.Random(seed)
        print(f"seed {seed} (RTP_TEST_SEED repeats it)")
        created, tried_deletes, deleted, users = [], set(), [], []
        for self.round in range(self.ROUNDS):
            stop = threading.Event()
            threads = [threading.Thread(target=self.load, args=(self.admin, w, stop, created, tried_deletes, deleted, users))
                       for w in range(8)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 1.5))
            self.s.send_signal(signal.SIGKILL)
            stop.set()
            for t in threads:
                t.join(timeout=30)
                self.assertFalse(t.is_alive())
            self.assertEqual(self.s.stop(expect_status=None), -signal.SIGKILL)
            if not on_postgres():
                self.assertEqual(self.s.db("PRAGMA integrity_check"), [("ok",)])
                self.assertEqual(self.s.db("PRAGMA foreign_key_check"), [])
            self.s.start()
            self.admin = self.s.login()

            present = {row[0] for row in self.s.db("SELECT pv_string FROM process_variables")}
            self.assertEqual([n for n in created if n not in tried_deletes and n not in present], [])
            self.assertEqual([n for n in deleted if n in present], [])
            user_ids = {row[0] for row in self.s.db("SELECT user_id FROM users")}
            self.assertEqual([u for u in users if u not in user_ids], [])
            # experiments follow their PVs: none without a PV, none missing for a PV
            self.assertEqual(self.s.db("SELECT short_id FROM experiments WHERE short_id NOT IN "
                                       "(SELECT experiment_short_id FROM process_variables)"), [])
            r = self.s.request("GET", "/experiments/pvs", token=self.admin)
            self.assertEqual(r.status, 200, r)
        self.assertGreater(len(created), 0)
        print(f"{len(created)} creates, {len(deleted)} deletes, {len(users)} users acknowledged over {self.ROUNDS} kills")


if __name__ == "__main__":
    main()
