"""The service files: the systemd unit passes systemd-analyze verify (a copy whose binaries point
into the build tree), the bus policy and interface are well-formed, and meson install puts
everything where systems look for it."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

BUILD = os.environ["MESON_BUILD_ROOT"]
SOURCE = os.environ["MESON_SOURCE_ROOT"]


class DataFiles(unittest.TestCase):
    def test_unit_verifies(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed")
        with open(os.path.join(BUILD, "data", "realtimeplot-server.service")) as f:
            unit = f.read()
        server = os.path.join(BUILD, "src", "realtimeplot-server")
        rtpctl = os.path.join(BUILD, "src", "rtpctl")
        lines = []
        for line in unit.splitlines():
            if line.startswith("ExecStart="):
                line = "ExecStart=" + server + " " + line.split(" ", 1)[1]
            elif line.startswith("ExecReload="):
                line = "ExecReload=" + rtpctl + " " + line.split(" ", 1)[1]
            lines.append(line)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "realtimeplot-server.service")
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertNotIn("Unknown key", r.stderr)
            self.assertNotIn("Unknown section", r.stderr)

    def test_unit_hardening(self):
        with open(os.path.join(BUILD, "data", "realtimeplot-server.service")) as f:
            unit = f.read()
        for line in ["Type=notify", "WatchdogSec=30", "BusName=org.realtimeplot.Server1", "ProtectSystem=strict", "StateDirectory=realtimeplot",
                     "Environment=HOME=%S/realtimeplot", "NoNewPrivileges=true"]:
            self.assertIn(line + "\n", unit)
        self.assertNotIn("@", unit.replace("@system-service", ""))  # every placeholder filled in

    def test_policy_and_interface_parse(self):
        policy = ET.parse(os.path.join(SOURCE, "data", "org.realtimeplot.Server1.conf")).getroot()
        owners = {p.get("user") for p in policy.findall("policy") if p.find("allow[@own='org.realtimeplot.Server1']") is not None}
        self.assertEqual(owners, {"realtimeplot", "root"})
        callers = {p.get("group") or p.get("user") for p in policy.findall("policy")
                   if p.find("allow[@send_destination='org.realtimeplot.Server1']") is not None}
        self.assertIn("realtimeplot", callers)
        iface = ET.parse(os.path.join(SOURCE, "data", "org.realtimeplot.Server1.xml")).getroot()
        methods = {m.get("name") for m in iface.iter("method")}
        for m in ["GetStatus", "ListUsers", "CreateUser", "ResetPassword", "DeleteUser", "ListExperiments", "CreatePv",
                  "DeletePv", "AssignUser", "ExportConfig", "ImportConfig", "PublishValue", "ReloadConfig"]:
            self.assertIn(m, methods)

    def test_openapi_document_is_what_its_source_writes(self):
        r = subprocess.run([sys.executable, os.path.join(SOURCE, "data", "openapi.py")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(SOURCE, "data", "openapi.json")) as f:
            self.assertEqual(f.read(), r.stdout, "run: python3 data/openapi.py > data/openapi.json")

    def test_openapi_document_is_valid_openapi_3_1(self):
        import jsonschema
        with open(os.path.join(SOURCE, "data", "openapi.json")) as f:
            doc = json.load(f)
        with open(os.path.join(SOURCE, "tests", "openapi", "oas-3.1-schema.json")) as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator(schema).validate(doc)
        for name, component in doc["components"]["schemas"].items():
            jsonschema.Draft202012Validator.check_schema(component)
        # every operation answers the error envelope for its errors, every $ref resolves
        resolver = jsonschema.RefResolver.from_schema(doc)
        for path, item in doc["paths"].items():
            for method, operation in item.items():
                if method == "parameters":
                    continue
                self.assertEqual(operation["responses"]["default"]["content"]["application/json"]["schema"],
                                 {"$ref": "#/components/schemas/Error"}, (method, path))
        for name in doc["components"]["schemas"]:
            resolver.resolve(f"#/components/schemas/{name}")

    def test_install(self):
        with tempfile.TemporaryDirectory() as dest:
            r = subprocess.run(["meson", "install", "-C", BUILD, "--destdir", dest, "--no-rebuild", "--quiet"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            found = set()
            for root, _, files in os.walk(dest):
                found.update(os.path.join(root, f)[len(dest):] for f in files)
            names = {os.path.basename(f) for f in found}
            for f in ["realtimeplot-server", "rtpctl", "realtimeplot-server.service", "org.realtimeplot.Server1.service",
                      "org.realtimeplot.Server1.conf", "server.env.example", "realtimeplot-server.mo", "openapi.json"]:
                self.assertIn(f, names, sorted(found))


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    sys.exit(0 if result.wasSuccessful() else 1)
