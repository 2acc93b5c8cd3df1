"""GET /live/<short_id>: new values pushed over a WebSocket, with the token as a subprotocol."""
import json
import time

import websocket

from rtplib import ArchiverFixture, ServerTestCase, main

PV = "Test:M1:Fan"


class Live(ServerTestCase):
    def setUp(self):
        self.fx = ArchiverFixture().start()
        self.addCleanup(self.fx.stop)
        self.server_env = {"ARCHIVER_URL": self.fx.url, "RTP_MONITOR_INTERVAL": "0.2", "ARCHIVER_TIMEZONE": "UTC"}
        super().setUp()
        self.first_sample = [int(time.time()) - 5, 0, 1.5]
        self.fx.pv(PV, samples=[self.first_sample])
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": PV})
        self.user, self.token = self.create_user("lena")
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": [self.user["user_id"]]})
        self.ws_url = self.s.url.replace("http://", "ws://") + "live/Test"

    def test_values_arrive(self):
        ws = websocket.create_connection(self.ws_url, subprotocols=["rtp.v1", self.token], timeout=30)
        self.addCleanup(ws.close)
        self.assertEqual(ws.getsubprotocol(), "rtp.v1")
        first = json.loads(ws.recv())  # the latest archived value
        self.assertEqual(first["pv"], PV)
        self.assertEqual(first["data"], 1.5)
        now = int(time.time())
        # the archived sample stays as it was (a re-stamped copy would be a new value); one new sample follows
        self.fx.pv(PV, samples=[self.first_sample, [now, 250000000, 42.0]])
        second = json.loads(ws.recv())
        self.assertEqual(second["data"], 42.0)
        self.assertTrue(second["time"].endswith(".250000+00:00"), second["time"])
        # the token may also come as ?token=
        ws2 = websocket.create_connection(self.ws_url + "?token=" + self.token, timeout=30)
        self.addCleanup(ws2.close)
        self.assertEqual(json.loads(ws2.recv())["pv"], PV)

    def test_waveforms_flow_and_a_slow_consumer_is_dropped(self):
        import socket
        self.fx.pv("Test:M1:Wave", start=int(time.time()) - 1, period=0.05, count=100000, kind="bigwave")
        self.s.request("POST", "/experiments/pvs", token=self.admin, json_body={"pv_string": "Test:M1:Wave"})
        good = websocket.create_connection(self.ws_url, subprotocols=["rtp.v1", self.token], timeout=30)
        self.addCleanup(good.close)
        # a client that never reads, with a small receive window
        slow = websocket.create_connection(self.ws_url, subprotocols=["rtp.v1", self.token], timeout=30,
                                           sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
        self.addCleanup(slow.close)
        waves = 0
        deadline = time.monotonic() + 60
        while "dropping a live viewer" not in self.s.stderr() and time.monotonic() < deadline:
            m = json.loads(good.recv())  # the reading client keeps up
            if m.get("pv") == "Test:M1:Wave":
                self.assertEqual(len(m["data"]), 20000)  # waveforms are passed on whole
                waves += 1
        self.assertIn("dropping a live viewer", self.s.stderr())
        self.assertGreater(waves, 0)
        self.assertTrue(json.loads(good.recv()))  # and is still served

    def close_code(self, ws, seconds=20):
        """Reads until the server closes; returns (code, reason)."""
        ws.settimeout(seconds)
        while True:
            opcode, data = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(data[:2], "big"), data[2:].decode()

    def test_access_is_revoked(self):
        ws = websocket.create_connection(self.ws_url, subprotocols=["rtp.v1", self.token], timeout=30)
        self.addCleanup(ws.close)
        self.assertEqual(json.loads(ws.recv())["pv"], PV)
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_remove": [self.user["user_id"]]})
        self.assertEqual(self.close_code(ws), (4403, "access revoked"))
        # a changed password ends the token: 4401
        self.s.request("PUT", "/experiments/Test", token=self.admin, json_body={"users_to_add": [self.user["user_id"]]})
        ws = websocket.create_connection(self.ws_url, subprotocols=["rtp.v1", self.token], timeout=30)
        self.addCleanup(ws.close)
        self.s.request("PUT", f"/auth/users/{self.user['user_id']}", token=self.admin, json_body={"password": "changed!"})
        self.assertEqual(self.close_code(ws), (4401, "access revoked"))
        # a deleted user: 4401; a change by direct SQL (another instance) counts too
        token = self.s.login(self.user["login_name"], "changed!")
        ws = websocket.create_connection(self.ws_url, subprotocols=["rtp.v1", token], timeout=30)
        self.addCleanup(ws.close)
        self.s.db("DELETE FROM user_experiments WHERE user_id = ?", (self.user["user_id"],))
        self.assertEqual(self.close_code(ws), (4403, "access revoked"))
        self.assertIn("access revoked", self.s.stderr())

    def refused(self, url, subprotocols=None):
        with self.assertRaises(websocket.WebSocketBadStatusException) as cm:
            websocket.create_connection(url, subprotocols=subprotocols, timeout=30)
        return cm.exception.status_code

    def test_refusals(self):
        self.assertEqual(self.refused(self.ws_url), 401)
        self.assertEqual(self.refused(self.ws_url, ["rtp.v1", "not-a-token"]), 403)
        _, stranger = self.create_user("stan")
        self.assertEqual(self.refused(self.ws_url, ["rtp.v1", stranger]), 403)
        self.assertEqual(self.refused(self.ws_url.replace("/Test", "/Nope"), ["rtp.v1", self.token]), 404)
        # a plain GET is told to speak WebSocket
        r = self.s.request("GET", "/live/Test?token=" + self.token)
        self.assertError(r, 400, "This endpoint speaks WebSocket.")
        self.assertNotIn(self.token, self.s.stderr())  # never logged


class LiveCors(ServerTestCase):
    server_env = {"RTP_CORS_ORIGIN": "https://lab.example.org"}

    def test_refusals_carry_the_configured_cors_headers(self):
        # /live answers through the server's own envelope (it echoed the request's Origin before)
        r = self.s.request("GET", "/live/Test", headers={"Origin": "https://evil.example"})
        self.assertError(r, 401, "Access to this resource requires a valid access-token.")
        self.assertEqual(r.header("Access-Control-Allow-Origin"), "https://lab.example.org")
        self.assertEqual(r.header("Access-Control-Expose-Headers"), "Content-Disposition")


if __name__ == "__main__":
    main()
