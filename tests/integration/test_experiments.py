"""Integration tests of /experiments and /file over real HTTP, as admin, assigned and unassigned users."""
import http.client
import os
import re
import signal
import sqlite3
import threading
import time
import unittest

from rtplib import Server, ServerTestCase, main, on_postgres

NOT_ASSIGNED = "Only users that are assigned to the experiment and admins can access it."
ADMIN_ONLY = "Only administrators are allowed to access this endpoint."
WRONG_TYPE = "Some or more values in the JSON body were null or do not correspond to the required column type in the database."
IMPORT_OK = "Import complete. Please check the number of entries found, compare them with the number in the database, and consult the error messages if necessary!"


def line_error(n):
    return (f"line-{n}: An error occurred while creating the process variable. Check if the pv_string and the other "
            "attributes are set correctly, and start the import again. Valid process variables are not affected.")


class Experiments(ServerTestCase):
    def pv(self, pv_string, **fields):
        body = {"pv_string": pv_string}
        body.update(fields)
        r = self.s.request("POST", "/experiments/pvs", token=self.admin, json_body=body)
        self.assertEqual(r.status, 200, r)
        return r.json["process_variable"]

    def test_create_pv_creates_experiment(self):
        r = self.s.request("POST", "/experiments/pvs/", token=self.admin, json_body={
            "pv_string": "Test:Machine3:FanSpeed1", "human_readable_name": "Fan <1>", "default_threshold_min": 0,
            "default_threshold_max": 100, "available_for_mqtt_publish": True})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"process_variable": {
            "pv_string": "Test:Machine3:FanSpeed1", "human_readable_name": "Fan <1>", "experiment_short_id": "Test",
            "available_for_mqtt_publish": True, "default_threshold_min": 0, "default_threshold_max": 100}})
        self.assertEqual(self.s.db("SELECT short_id FROM experiments"), [("Test",)])
        self.assertEqual(self.s.db("SELECT default_threshold_min, available_for_mqtt_publish FROM process_variables"), [(0, 1)])
        r = self.s.request("GET", "/experiments", token=self.admin)
        self.assertEqual(r.json, {"experiments": [{"short_id": "Test", "human_readable_name": None,
                                                   "process_variable_urls": ["/experiments/pvs/Test:Machine3:FanSpeed1"],
                                                   "user_urls": []}]})
        self.assertEqual(self.s.request("GET", "/experiments/pvs", token=self.admin).json["process_variables"][0]["pv_string"],
                         "Test:Machine3:FanSpeed1")

    def test_create_pv_errors(self):
        r = self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"human_readable_name": "x"})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json, {"errors": [{"pv_string": "No pv_string was specified. To create a process variable, you must provide a pv_string because it serves as primary_key."}]})
        self.pv("A:1")
        self.assertError(self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "A:1"}), 409,
                         "A process variable (A:1) is already present in the database.")
        for bad in ["NoColon", ":x", ""]:
            self.assertError(self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": bad}), 400,
                             f"pv_string: The pv_string ({bad}) must start with the experiment's short_id followed by ':'.")
        for body in [{"pv_string": 5}, {"pv_string": "A:2", "default_threshold_min": "3"},
                     {"pv_string": "A:2", "available_for_mqtt_publish": "true"}, {"pv_string": "A:2", "default_threshold_max": 1.5}]:
            self.assertError(self.s.request("POST", "/experiments/pvs", token=self.admin, json_body=body), 400, WRONG_TYPE)
        self.assertError(self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "A:" + "x" * 99}), 400,
                         "pv_string: The value is longer than 100 characters.")
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM process_variables"), [(1,)])

    def test_access_rules(self):
        self.pv("Exp:A")
        self.pv("Other:B")
        user, token = self.create_user("ulla")
        _, stranger = self.create_user("sven")
        r = self.s.request("PUT", "/experiments/Exp", token=self.admin, json_body={"users_to_add": [user["user_id"]]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["experiment"]["user_urls"], ["/auth/users/" + user["user_id"]])
        self.assertEqual(self.s.db("SELECT user_id, short_id FROM user_experiments"), [(user["user_id"], "Exp")])
        # the assigned user sees the experiment, without user_urls
        r = self.s.request("GET", "/experiments/Exp", token=token)
        self.assertEqual(r.json, {"experiment": {"short_id": "Exp", "human_readable_name": None,
                                                 "process_variable_urls": ["/experiments/pvs/Exp:A"]}})
        self.assertEqual(self.s.request("GET", "/experiments/pvs/Exp%3AA", token=token).status, 200)
        self.assertEqual(self.s.request("GET", "/auth/users/current", token=token).json["user"]["experiment_urls"], ["/experiments/Exp"])
        # but not other experiments, and not as a stranger
        self.assertError(self.s.request("GET", "/experiments/Other", token=token), 403, NOT_ASSIGNED)
        self.assertError(self.s.request("GET", "/experiments/pvs/Other:B", token=token), 403, NOT_ASSIGNED)
        self.assertError(self.s.request("GET", "/experiments/Exp", token=stranger), 403, NOT_ASSIGNED)
        self.assertError(self.s.request("GET", "/experiments/pvs/Exp:A", token=stranger), 403, NOT_ASSIGNED)
        self.assertError(self.s.request("GET", "/experiments/Nope", token=stranger), 404, "The experiment (Nope) is not present in the database.")
        # admin-only endpoints
        for method, path in [("GET", "/experiments"), ("GET", "/experiments/pvs"), ("PUT", "/experiments/Exp"),
                             ("DELETE", "/experiments/Exp"), ("POST", "/experiments/pvs"), ("PUT", "/experiments/pvs/Exp:A"),
                             ("DELETE", "/experiments/pvs/Exp:A"), ("GET", "/file/export"), ("POST", "/file/import")]:
            self.assertError(self.s.request(method, path, token=token, json_body={}), 403, ADMIN_ONLY)
        # removal
        r = self.s.request("PUT", "/experiments/Exp", token=self.admin, json_body={"users_to_remove": [user["user_id"]]})
        self.assertEqual(r.json["experiment"]["user_urls"], [])
        self.assertError(self.s.request("GET", "/experiments/Exp", token=token), 403, NOT_ASSIGNED)
        # deleting a user removes the assignments
        self.s.request("PUT", "/experiments/Exp", token=self.admin, json_body={"users_to_add": [user["user_id"]]})
        self.s.request("DELETE", "/auth/users/" + user["user_id"], token=self.admin)
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM user_experiments"), [(0,)])

    def test_update_experiment(self):
        self.pv("Exp:A")
        r = self.s.request("PUT", "/experiments/Exp", token=self.admin, json_body={
            "human_readable_name": "My experiment", "short_id": "New", "users_to_add": ["ghost"], "users_to_remove": ["nobody"]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["experiment"]["human_readable_name"], "My experiment")
        self.assertEqual(r.json["errors"], [
            "short_id: The short_id cannot be changed at the moment. Edit the individual process variables to create a new experiment with a new short_id!",
            "users_to_add: The user (ghost) does not exist and therefore cannot be added to the experiment.",
            "users_to_remove: The user (nobody) does not exist and therefore cannot be removed from the experiment.",
        ])
        self.assertEqual(self.s.db("SELECT short_id, human_readable_name FROM experiments"), [("Exp", "My experiment")])
        self.assertError(self.s.request("PUT", "/experiments/Exp", token=self.admin, json_body={"users_to_add": "0"}), 400, WRONG_TYPE)
        self.assertError(self.s.request("PUT", "/experiments/None", token=self.admin, json_body={}), 404,
                         "The experiment (None) is not present in the database.")

    def test_update_pv(self):
        self.pv("Exp:A", human_readable_name="a", default_threshold_min=5)
        self.pv("Exp:B")
        self.pv("Taken:X")
        r = self.s.request("PUT", "/experiments/pvs/Exp:A", token=self.admin, json_body={
            "available_for_mqtt_publish": "yes", "default_threshold_min": 0, "default_threshold_max": "ten",
            "experiment_short_id": "Other", "human_readable_name": "renamed"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["process_variable"]["default_threshold_min"], 0)
        self.assertEqual(r.json["process_variable"]["human_readable_name"], "renamed")
        self.assertEqual(r.json["errors"], [
            "available_for_mqtt_publish: Value must be either true or false.",
            "default_threshold_max: Value must be Integer.",
            "experiment_short_id: The experiment_short_id cannot be changed manually as it is generated from the pv_string. Change the characters in the pv_string before the first colon to change the short_id and thus assign the pv_string to a new experiment.",
        ])
        # a threshold can be cleared with null
        r = self.s.request("PUT", "/experiments/pvs/Exp:A", token=self.admin, json_body={"default_threshold_min": None})
        self.assertIsNone(r.json["process_variable"]["default_threshold_min"])
        self.assertEqual(r.json["errors"], [])
        # rename onto an existing PV → 409, nothing changed
        self.assertError(self.s.request("PUT", "/experiments/pvs/Exp:A", token=self.admin,
                                        json_body={"pv_string": "Taken:X", "human_readable_name": "zzz"}), 409,
                         "A process variable (Taken:X) is already present in the database.")
        self.assertEqual(self.s.db("SELECT human_readable_name FROM process_variables WHERE pv_string = 'Exp:A'"), [("renamed",)])
        self.assertError(self.s.request("PUT", "/experiments/pvs/Exp:A", token=self.admin, json_body={"pv_string": "NoPrefix"}), 400,
                         "pv_string: The pv_string (NoPrefix) must start with the experiment's short_id followed by ':'.")
        # rename to another experiment, twice: the emptied experiment goes away
        r = self.s.request("PUT", "/experiments/pvs/Exp:A", token=self.admin, json_body={"pv_string": "New:A"})
        self.assertEqual(r.json["process_variable"]["experiment_short_id"], "New")
        r = self.s.request("PUT", "/experiments/pvs/Exp:B", token=self.admin, json_body={"pv_string": "New:B"})
        self.assertEqual(sorted(x[0] for x in self.s.db("SELECT short_id FROM experiments")), ["New", "Taken"])
        self.assertError(self.s.request("PUT", "/experiments/pvs/Exp:A", token=self.admin, json_body={}), 404,
                         "The process variable (Exp:A) is not present in the database.")

    def test_delete(self):
        self.pv("Exp:A")
        self.pv("Exp:B")
        r = self.s.request("DELETE", "/experiments/pvs/Exp:A", token=self.admin)
        self.assertEqual(r.json, {"messages": ["The process variable (Exp:A) was successfully deleted from the database."],
                                  "deleted_process_variable": "Exp:A", "deleted_experiment": None})
        r = self.s.request("DELETE", "/experiments/pvs/Exp:B", token=self.admin)
        self.assertEqual(r.json["deleted_experiment"], "Exp")
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM experiments"), [(0,)])
        self.pv("Z:1")
        self.pv("Z:2")
        r = self.s.request("DELETE", "/experiments/Z/", token=self.admin)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json["deleted_process_variables"], ["Z:1", "Z:2"])
        self.assertEqual(r.json["deleted_experiment"], "Z")
        self.assertEqual(r.json["messages"][-1], "The experiment (Z) was successfully deleted from the database.")
        self.assertEqual(self.s.db("SELECT COUNT(*) FROM process_variables"), [(0,)])
        self.assertError(self.s.request("DELETE", "/experiments/pvs/Z:1", token=self.admin), 404,
                         "The process variable (Z:1) is not present in the database.")


class ImportExport(ServerTestCase):
    def test_export_format_and_roundtrip(self):
        # names as odd as EPICS allows (non-ASCII names are refused since the hostile-input issue)
        data = [
            {"pv_string": "Lab;1:Fan<Speed>", "human_readable_name": "Lüfter \"A\"; Drehzahl = schnell",
             "available_for_mqtt_publish": True, "default_threshold_min": 0, "default_threshold_max": -5},
            {"pv_string": "Lab;1:T"},
            {"pv_string": "Zurich:T[1].VAL", "human_readable_name": "it's <b>'quoted'</b>", "default_threshold_max": 12},
        ]
        for d in data:
            self.assertEqual(self.s.request("POST", "/experiments/pvs", token=self.admin, json_body=d).status, 200)
        self.s.request("PUT", "/experiments/Zurich", token=self.admin, json_body={"human_readable_name": "Zürich = ZH; CH"})
        r = self.s.request("GET", "/file/export", token=self.admin)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
        self.assertRegex(r.header("Content-Disposition"), r"^attachment; filename=\d{8}-\d{6}-rtpserver-export\.rtpdb$")
        text = r.raw
        self.assertIn("[EXPERIMENT];short_id=Lab&SMKL&1\n", text)
        self.assertIn("    [PROCESS_VARIABLE];pv_string=Lab&SMKL&1:Fan<Speed>;human_readable_name=Lüfter \"A\"&SMKL& Drehzahl = schnell;"
                      "experiment_short_id=Lab&SMKL&1;available_for_mqtt_publish=True;default_threshold_min=0;default_threshold_max=-5\n", text)
        self.assertIn("    [PROCESS_VARIABLE];pv_string=Lab&SMKL&1:T;experiment_short_id=Lab&SMKL&1;available_for_mqtt_publish=False\n", text)
        self.assertIn("[EXPERIMENT];short_id=Zurich;human_readable_name=Zürich = ZH&SMKL& CH\n", text)
        before_pvs = self.s.request("GET", "/experiments/pvs", token=self.admin).json
        before_exps = self.s.request("GET", "/experiments", token=self.admin).json

        fresh = Server()
        self.addCleanup(fresh.cleanup)
        fresh.start()
        token = fresh.login()
        r = fresh.request("POST", "/file/import", token=token, body=text.encode())
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"messages": [IMPORT_OK], "errors": [], "number_of_experiments_found_in_file": 2,
                                  "number_of_process_variables_found_in_file": 3, "number_of_experiments_now_in_database": 2,
                                  "number_of_process_variables_now_in_database": 3})
        self.assertEqual(fresh.request("GET", "/experiments/pvs", token=token).json, before_pvs)
        self.assertEqual(fresh.request("GET", "/experiments", token=token).json, before_exps)
        fresh.stop()

    def test_import_of_original_file_with_errors(self):
        # as the original service wrote it, with None, CRLF, a BOM and some bad lines
        text = ("\ufeff# Realtimeplot export\r\n"
                "[EXPERIMENT];short_id=Old;human_readable_name=None\r\n"
                "    [PROCESS_VARIABLE];pv_string=Old:A;human_readable_name=None;experiment_short_id=Ignored;available_for_mqtt_publish=False;default_threshold_min=None;default_threshold_max=None\r\n"
                "    [PROCESS_VARIABLE];pv_string=Old:B;available_for_mqtt_publish=maybe\r\n"
                "    [PROCESS_VARIABLE];human_readable_name=no pv string\r\n"
                "    [PROCESS_VARIABLE];pv_string=Old:C;default_threshold_max=12;unknown_key=1\r\n"
                "\r\n")
        r = self.s.request("POST", "/file/import", token=self.admin, body=text.encode())
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["errors"], [line_error(4), line_error(5)])
        self.assertEqual(r.json["number_of_process_variables_found_in_file"], 4)
        self.assertEqual(r.json["number_of_process_variables_now_in_database"], 2)
        self.assertEqual(self.s.db("SELECT pv_string, experiment_short_id, default_threshold_max FROM process_variables ORDER BY 1"),
                         [("Old:A", "Old", None), ("Old:C", "Old", 12)])
        self.assertError(self.s.request("POST", "/file/import", token=self.admin, body=b""), 400, "No data found. Nothing could be imported.")

    def test_killed_import_changes_nothing(self):
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Keep:me", "default_threshold_min": 1})
        before = self.s.db("SELECT * FROM process_variables")
        lines = ["[EXPERIMENT];short_id=Big"]
        lines += [f"[PROCESS_VARIABLE];pv_string=Big:pv{i};human_readable_name=PV number {i};default_threshold_min={i}"
                  for i in range(300000)]
        lines.append("[PROCESS_VARIABLE];pv_string=Keep:me;default_threshold_min=999")
        body = ("\n".join(lines) + "\n").encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=120)
        conn.request("POST", "/file/import", body=body, headers={"x-access-tokens": self.admin})
        # the whole body is sent: the server is importing now
        time.sleep(0.5)
        self.s.stop(sig=signal.SIGKILL, expect_status=None)
        with self.assertRaises((http.client.HTTPException, OSError)):
            conn.getresponse().read()
        conn.close()
        self.assertEqual(self.s.db("SELECT * FROM process_variables"), before)
        if not on_postgres():
            self.assertEqual(self.s.db("PRAGMA integrity_check"), [("ok",)])
        self.s.start()  # and it starts again on the same file
        self.assertEqual(self.s.request("GET", "/experiments/pvs/Keep:me", token=self.admin).json["process_variable"]["default_threshold_min"], 1)


if __name__ == "__main__":
    main()
