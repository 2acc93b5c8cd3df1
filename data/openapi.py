#!/usr/bin/env python3
"""The source of data/openapi.json, the OpenAPI 3.1 description of every route.

Run `python3 data/openapi.py > data/openapi.json` after changing it; the data-files test checks that
the committed document is what this script writes, and the integration tests check every JSON answer
they receive against it (tests/integration/rtplib.py) and that its paths are exactly the routes the
server registers (tests/integration/test_openapi.py).
"""
import json
import sys

VERSION = "0.1.0"


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required=(), **props):
    o = {"type": "object", "properties": props}
    if required:
        o["required"] = list(required)
    return o


def arr(items):
    return {"type": "array", "items": items}


S = {"type": "string"}
I = {"type": "integer"}
N = {"type": "number"}
B = {"type": "boolean"}
ANY = {}


def nullable(schema):
    return {"anyOf": [schema, {"type": "null"}]}


SCHEMAS = {
    "Error": obj(["errors"], errors=arr({"anyOf": [S, {"type": "object"}, arr(S)]})),
    "Messages": obj(["messages"], messages=arr(S)),
    "User": obj(["user_id", "login_name", "first_name", "last_name", "email", "user_type", "preferred_language",
                 "experiment_urls", "url"],
                user_id=S, login_name=S, first_name=S, last_name=S, email=nullable(S),
                user_type={"type": "string", "enum": ["User", "Admin"]}, preferred_language=S,
                experiment_urls=arr(S), url=S,
                source={"type": "string", "enum": ["directory"],
                        "description": "only for users made by a directory login"},
                temporary_password={"type": "string", "description": "only when the user was just created"}),
    "UserChanges": obj(login_name=S, first_name=S, last_name=S, email=nullable(S), user_type=S,
                       preferred_language=nullable(S), password=S),
    "Experiment": obj(["short_id", "human_readable_name", "process_variable_urls"], short_id=S,
                      human_readable_name=nullable(S), process_variable_urls=arr(S),
                      user_urls={**arr(S), "description": "admins only"}),
    "ProcessVariable": obj(["pv_string", "human_readable_name", "experiment_short_id", "available_for_mqtt_publish",
                            "default_threshold_min", "default_threshold_max"],
                           pv_string=S, human_readable_name=nullable(S), experiment_short_id=S,
                           available_for_mqtt_publish=B, default_threshold_min=nullable(I),
                           default_threshold_max=nullable(I), setpoint_min=N, setpoint_max=N, setpoint_max_step=N,
                           readback_pv=S),
    "ProcessVariableFields": obj(pv_string=S, human_readable_name=nullable(S), available_for_mqtt_publish=ANY,
                                 default_threshold_min=ANY, default_threshold_max=ANY, setpoint_min=ANY,
                                 setpoint_max=ANY, setpoint_max_step=ANY, readback_pv=ANY),
    "Point": obj(["time", "data"], time=S, data=ANY, min=N, max=N, count=I, std=N, severity=I, status=ANY),
    "DataOptions": obj(since=S, until=S, max_points=I, operator=S, bin_s=I,
                       format={"type": "string", "enum": ["json", "csv", "tsv"]},
                       align={"type": "string", "enum": ["none", "previous"]},
                       time_format={"type": "string", "enum": ["local", "iso", "epoch"]},
                       include=arr({"type": "string", "enum": ["severity", "status", "meta"]})),
    "Data": obj(["data"], data=obj(["experiment", "process_variables_data"], experiment=ref("Experiment"),
                                   process_variables_data={"type": "object",
                                                           "additionalProperties": arr(ref("Point"))},
                                   process_variables_meta={"type": "object"}),
                warnings=arr(S)),
    "ValuesAt": obj(["at", "values"], at=S, values={"type": "object", "additionalProperties": nullable(
        obj(["time", "data"], time=S, data=ANY, severity=ANY, status=ANY))}),
    "Subscription": obj(["user_id", "pv_string", "email", "threshold_min", "threshold_max"], user_id=S, pv_string=S,
                        email=S, threshold_min=I, threshold_max=I, warning_min=I, warning_max=I, delay_s=I, latch=B,
                        notify_clear=B),
    "SubscriptionFields": obj(email=ANY, threshold_min=ANY, threshold_max=ANY, warning_min=ANY, warning_max=ANY,
                              delay_s=ANY, latch=ANY, notify_clear=ANY, user_id=ANY),
    "Alert": obj(["id", "user_id", "pv_string", "opened", "closed", "breach_value", "threshold_min", "threshold_max",
                  "mails"], id=S, user_id=S, pv_string=S, opened=S, closed=nullable(S), breach_value=S,
                 threshold_min=I, threshold_max=I,
                 mails=arr(obj(["recipient", "subject", "sent", "attempts"], recipient=S, subject=S, sent=ANY,
                               attempts=I, last_error=S))),
    "Alarm": obj(["id", "pv_string", "experiment_short_id", "user_id", "severity", "value", "active", "since",
                  "last_change", "ended", "acknowledged", "shelved", "latched", "notifications"],
                 id=S, pv_string=S, experiment_short_id=S, user_id=S,
                 severity={"type": "string", "enum": ["MINOR", "MAJOR", "INVALID"]}, value=S, active=B, since=S,
                 last_change=S, ended=nullable(S),
                 acknowledged=nullable(obj(["by", "at"], by=S, at=S, comment=nullable(S))),
                 shelved=nullable(obj(["by", "until"], by=S, until=S, reason=S)), latched=B, notifications=I),
    "AlarmEvent": obj(["time", "event", "severity", "value"], time=S,
                      event={"type": "string", "enum": ["opened", "escalated", "deescalated", "cleared",
                                                        "acknowledged", "shelved", "unshelved", "ended",
                                                        "notified"]},
                      severity=S, value=nullable(S), by=S, comment=S, channel=S),
    "PublishResult": obj(["messages"], messages=arr(S), verified=B, readback=ANY),
    "PublishLogEntry": obj(["time", "id", "user_id", "pv_string", "value", "outcome"], time=S, id=ANY, user_id=S,
                           pv_string=S, value=ANY, outcome=S, previous=ANY, reason=ANY, readback=ANY, reverts=ANY,
                           snapshot=ANY),
    "Snapshot": obj(["id", "experiment_short_id", "name", "taken_at", "taken_by"], id=S, experiment_short_id=S,
                    name=S, comment=nullable(S), taken_at=S, taken_by=S, at=nullable(S),
                    values={"type": "object",
                            "additionalProperties": nullable(obj(["value", "time"], value=ANY, time=S))}),
    "Health": obj(["status", "version"], status={"const": "ok"}, version=S),
    "Ready": obj(["status", "checks"], status={"type": "string", "enum": ["ok", "degraded", "unavailable"]},
                 checks=obj(["database", "archiver", "mqtt", "smtp", "directory"], database=S, archiver=S, mqtt=S,
                            smtp=S, directory=S)),
}

P = {
    "short_id": "an experiment's short_id",
    "pv_string": "a process variable's name (EPICS: letters, digits, _ - + : [ ] < > ;)",
    "user_id": "a user's id, or `current` for the caller",
    "alarm_id": "an alarm's id",
    "entry_id": "an entry of the set-point audit log",
    "snapshot_id": "a snapshot's id",
}

TOKEN = [{"token": []}]
ADMIN = [{"token": []}]
PUBLIC = []


def json_body(schema):
    return {"content": {"application/json": {"schema": schema}}}


def answer(description, schema=None, extra=None):
    r = {"description": description}
    if schema is not None:
        r["content"] = {"application/json": {"schema": schema}}
    if extra:
        r["content"] = {**r.get("content", {}), **extra}
    return r


def wrap(key, schema):
    return obj([key], **{key: schema})


def op(method, path, summary, security, ok, body=None, body_required=True, query=(), who=None, tag=None, **more):
    """One operation: the route's method and pattern as the server registers them, and its OpenAPI form."""
    o = {"summary": summary, "security": security, "responses": {"200": ok, "default": answer(
        "an error (status and message: docs/api.md and ../shared/API.md)", ref("Error"))}}
    if who:
        o["description"] = f"Who: {who}."
    if tag:
        o["tags"] = [tag]
    if body is not None:
        o["requestBody"] = {**json_body(body), "required": body_required}
    params = [{"name": n, "in": "query", "required": req, "schema": sch, "description": d} for n, req, sch, d in query]
    if params:
        o["parameters"] = params
    o.update(more)
    return method, path, o


USER = wrap("user", ref("User"))
OPS = [
    op("post", "/auth/get_access_token", "Log in: an access token for Basic credentials", [{"basic": []}],
       answer("the token", obj(["access_token", "user_url"], access_token=S, user_url=S)), tag="auth",
       who="anyone with a login name and password (local, or the directory's)"),
    op("get", "/auth/users", "All users", ADMIN, answer("the users", wrap("users", arr(ref("User")))), tag="auth",
       who="admins"),
    op("post", "/auth/users", "Create a user (a temporary password is made)", ADMIN,
       answer("the user with its temporary_password", USER), body=ref("UserChanges"), tag="auth", who="admins"),
    op("get", "/auth/users/{user_id}", "One user", TOKEN, answer("the user", USER), tag="auth",
       who="admins, or that user"),
    op("put", "/auth/users/{user_id}", "Change a user (partial: valid keys applied, the others explained)", TOKEN,
       answer("the user, and the refused keys", obj(["user"], user=ref("User"), errors=arr(S))),
       body=ref("UserChanges"), tag="auth",
       who="admins, or that user (a password change by a non-admin sends Basic auth with the current password)"),
    op("delete", "/auth/users/{user_id}", "Delete a user", ADMIN, answer("done", ref("Messages")), tag="auth",
       who="admins"),

    op("get", "/experiments", "All experiments", ADMIN, answer("the experiments",
                                                                wrap("experiments", arr(ref("Experiment")))),
       tag="experiments", who="admins"),
    op("get", "/experiments/{short_id}", "One experiment", TOKEN, answer("the experiment",
                                                                         wrap("experiment", ref("Experiment"))),
       tag="experiments", who="admins and assigned users"),
    op("put", "/experiments/{short_id}", "Change an experiment, assign and unassign users", ADMIN,
       answer("the experiment and the refused changes", obj(["experiment"], experiment=ref("Experiment"),
                                                            errors=arr(ANY))),
       body=obj(human_readable_name=nullable(S), users_to_add=arr(S), users_to_remove=arr(S), short_id=ANY),
       tag="experiments", who="admins"),
    op("delete", "/experiments/{short_id}", "Delete an experiment with its PVs", ADMIN,
       answer("what was deleted", obj(["messages", "deleted_process_variables", "deleted_experiment"],
                                      messages=arr(S), deleted_process_variables=arr(S), deleted_experiment=S)),
       tag="experiments", who="admins"),
    op("get", "/experiments/pvs", "All process variables", ADMIN,
       answer("the PVs", wrap("process_variables", arr(ref("ProcessVariable")))), tag="experiments", who="admins"),
    op("post", "/experiments/pvs", "Create a process variable (its experiment too, when new)", ADMIN,
       answer("the PV", wrap("process_variable", ref("ProcessVariable"))), body=ref("ProcessVariableFields"),
       tag="experiments", who="admins"),
    op("get", "/experiments/pvs/{pv_string}", "One process variable", TOKEN,
       answer("the PV", wrap("process_variable", ref("ProcessVariable"))), tag="experiments",
       who="admins and users assigned to its experiment"),
    op("put", "/experiments/pvs/{pv_string}", "Change (or rename) a process variable", ADMIN,
       answer("the PV and the refused changes", obj(["process_variable"], process_variable=ref("ProcessVariable"),
                                                    errors=arr(ANY))),
       body=ref("ProcessVariableFields"), tag="experiments", who="admins"),
    op("delete", "/experiments/pvs/{pv_string}", "Delete a process variable", ADMIN,
       answer("what was deleted", obj(["messages"], messages=arr(S), deleted_process_variable=S,
                                      deleted_experiment=nullable(S))),
       tag="experiments", who="admins"),

    op("post", "/data/{short_id}", "Archived data of an experiment's PVs (JSON, CSV or TSV)", TOKEN,
       answer("the data", ref("Data"), {"text/csv": {"schema": S}, "text/tab-separated-values": {"schema": S}}),
       body=ref("DataOptions"), body_required=False, tag="data", who="admins and assigned users"),
    op("post", "/data/{short_id}/{pv_string}", "Archived data of one PV", TOKEN,
       answer("the data", ref("Data"), {"text/csv": {"schema": S}, "text/tab-separated-values": {"schema": S}}),
       body=ref("DataOptions"), body_required=False, tag="data", who="admins and assigned users"),
    op("post", "/data/{short_id}/at", "Each PV's value at a moment", TOKEN, answer("the values", ref("ValuesAt")),
       body=obj(at=S), body_required=False, tag="data", who="admins and assigned users"),
    op("get", "/archiver/pvs", "Search the archiver's PV names", ADMIN,
       answer("the names", wrap("pvs", arr(obj(["pv_string", "configured"], pv_string=S, configured=B,
                                               experiment_short_id=nullable(S))))),
       query=[("pattern", False, S, "a glob"), ("regex", False, S, "a regular expression (instead of pattern)"),
              ("limit", False, I, "1 to 1000, default 100")], tag="data", who="admins"),
    op("get", "/data/validate_pv_string/{pv_string}", "Whether the archiver knows a PV", ADMIN,
       answer("the verdict", obj(["pv_string_exists"], pv_string_exists=B)), tag="data", who="admins"),
    op("get", "/validate_pv_string/{pv_string}", "Whether the archiver knows a PV (the original's path)", ADMIN,
       answer("the verdict", obj(["pv_string_exists"], pv_string_exists=B)), tag="data", who="admins"),

    op("put", "/publish/{pv_string}", "Publish a set-point over MQTT (guard rails, verification)", TOKEN,
       answer("published (and verified, when asked)", ref("PublishResult")),
       body=obj(["value"], value=ANY, verify=B, tolerance=N, timeout_s=N, force=B), tag="publish",
       who="users assigned to the PV's experiment"),
    op("get", "/publish/log", "The set-point audit log", ADMIN,
       answer("the entries, newest first", wrap("entries", arr(ref("PublishLogEntry")))),
       query=[("pv", False, S, "one PV only"), ("limit", False, I, "1 to 1000, default 100")], tag="publish",
       who="admins"),
    op("post", "/publish/log/{entry_id}/revert", "Write an entry's previous value again", TOKEN,
       answer("published", ref("PublishResult")), body=obj(), body_required=False, tag="publish",
       who="the entry's writer, or an admin"),

    op("post", "/snapshots/{short_id}", "Take a snapshot of an experiment's set-points", TOKEN,
       answer("the snapshot", wrap("snapshot", ref("Snapshot"))), body=obj(["name"], name=S, comment=S, at=S),
       tag="snapshots", who="admins and assigned users"),
    op("get", "/snapshots/{short_id}", "An experiment's snapshots", TOKEN,
       answer("newest first, without values", wrap("snapshots", arr(ref("Snapshot")))), tag="snapshots",
       who="admins and assigned users"),
    op("get", "/snapshots/{short_id}/{snapshot_id}", "One snapshot (JSON, or CSV with format=csv)", TOKEN,
       answer("the snapshot", wrap("snapshot", ref("Snapshot")), {"text/csv": {"schema": S}}),
       query=[("format", False, {"type": "string", "enum": ["json", "csv"]}, "csv: pv,value,time")],
       tag="snapshots", who="admins and assigned users"),
    op("delete", "/snapshots/{short_id}/{snapshot_id}", "Delete a snapshot", TOKEN, answer("done", ref("Messages")),
       tag="snapshots", who="its taker, or an admin"),
    op("get", "/snapshots/{short_id}/{snapshot_id}/compare", "Saved values against the current ones", TOKEN,
       answer("per PV", wrap("process_variables", {"type": "object", "additionalProperties": obj(
           ["saved", "current", "delta", "within_tolerance"], saved=ANY, current=ANY, delta=nullable(N),
           within_tolerance=B)})),
       query=[("tolerance", False, N, "≥ 0, default 0")], tag="snapshots", who="admins and assigned users"),
    op("post", "/snapshots/{short_id}/{snapshot_id}/restore", "Write the saved values back through the guard rails",
       TOKEN, answer("per PV", wrap("results", {"type": "object", "additionalProperties": obj(
           ["outcome"], outcome=S, reason=S)})),
       body=obj(pvs=arr(S), dry_run=B), body_required=False, tag="snapshots",
       who="admins and assigned users (each PV: the set-point rules)"),

    op("post", "/email/subscribe/{pv_string}", "Subscribe to a PV's alarms", TOKEN,
       answer("the subscription", wrap("subscription", ref("Subscription"))), body=ref("SubscriptionFields"),
       body_required=False, tag="alarms", who="users assigned to the PV's experiment"),
    op("delete", "/email/subscribe/{pv_string}", "Unsubscribe", TOKEN, answer("done", obj(["message"], message=S)),
       tag="alarms", who="the subscriber"),
    op("delete", "/email/unsubscribe/{pv_string}", "Unsubscribe (the original's path)", TOKEN,
       answer("done", obj(["message"], message=S)), tag="alarms", who="the subscriber"),
    op("get", "/email/subscriptions", "One's subscriptions", TOKEN,
       answer("the subscriptions", wrap("subscriptions", arr(ref("Subscription")))), tag="alarms", who="any user"),
    op("get", "/email/subscriptions/{pv_string}", "One's subscriptions of a PV", TOKEN,
       answer("the subscriptions", wrap("subscriptions", arr(ref("Subscription")))), tag="alarms", who="any user"),
    op("get", "/email/alerts", "Alert episodes with their mails", TOKEN,
       answer("the episodes, newest first, at most 1 000", wrap("alerts", arr(ref("Alert")))), tag="alarms",
       who="any user (own; admins all)"),
    op("get", "/alarms", "Alarms", TOKEN,
       answer("newest first, at most the 1 000 most recently opened", wrap("alarms", arr(ref("Alarm")))),
       query=[("experiment", False, S, "one experiment only"),
              ("state", False, {"type": "string", "enum": ["open", "active", "unacknowledged", "shelved", "all"]},
               "default open"),
              ("severity", False, {"type": "string", "enum": ["MINOR", "MAJOR", "INVALID"]}, "one severity only")],
       tag="alarms", who="own alarms and those of one's experiments; admins all"),
    op("get", "/alarms/{alarm_id}/history", "An alarm's history", TOKEN,
       answer("the events", wrap("history", arr(ref("AlarmEvent")))), tag="alarms", who="as GET /alarms"),
    op("post", "/alarms/{alarm_id}/acknowledge", "Acknowledge an alarm", TOKEN,
       answer("the alarm", wrap("alarm", ref("Alarm"))), body=obj(comment=S), body_required=False, tag="alarms",
       who="the subscriber, users assigned to the experiment, admins"),
    op("post", "/alarms/{alarm_id}/shelve", "Shelve an alarm", TOKEN, answer("the alarm", wrap("alarm", ref("Alarm"))),
       body=obj(["reason"], until=S, seconds=I, reason=S), tag="alarms",
       who="the subscriber, users assigned to the experiment, admins"),
    op("delete", "/alarms/{alarm_id}/shelve", "Unshelve an alarm", TOKEN,
       answer("the alarm", wrap("alarm", ref("Alarm"))), tag="alarms",
       who="the subscriber, users assigned to the experiment, admins"),
    op("put", "/alarms/subscriptions/{pv_string}", "Change a subscription's alarm settings", TOKEN,
       answer("the subscription", wrap("subscription", ref("Subscription"))), body=ref("SubscriptionFields"),
       tag="alarms", who="own; admins any with user_id"),

    op("get", "/file/export", "The configuration as a .rtpdb file", ADMIN,
       {"description": "the file", "content": {"text/plain": {"schema": S}}}, tag="file", who="admins"),
    op("post", "/file/import", "Import a .rtpdb file", ADMIN,
       answer("what was imported and refused", obj(["messages", "errors"], messages=arr(S), errors=arr(ANY))),
       requestBody={"required": True, "content": {"text/plain": {"schema": S}}}, tag="file", who="admins"),

    op("get", "/health", "Liveness", PUBLIC, answer("the process serves requests", ref("Health")), tag="operations",
       who="anyone"),
    op("get", "/ready", "Readiness: the dependencies", PUBLIC, answer("ready (perhaps degraded)", ref("Ready")),
       tag="operations", who="anyone",
       **{"x-also": "503 with the same body when the database is not available"}),
    op("get", "/metrics", "Prometheus metrics (text exposition format 0.0.4)",
       [{"token": []}, {"metricsBearer": []}, {}],
       {"description": "the metrics", "content": {"text/plain": {"schema": S}}}, tag="operations",
       who="admins, the RTP_METRICS_TOKEN bearer, or anyone with RTP_METRICS_PUBLIC=1"),
    op("get", "/openapi.json", "This document", PUBLIC, answer("the OpenAPI document", {"type": "object"}),
       tag="operations", who="anyone"),
    op("get", "/live/{short_id}", "Live values and alarm transitions over a WebSocket", TOKEN,
       {"description": "not an answer: the connection upgrades (101) to a WebSocket; messages "
                       "{pv, time, data}, {heartbeat}, {alarm}"},
       query=[("token", False, S, "the access token, when the subprotocol cannot carry it")], tag="live",
       who="users assigned to the experiment", **{"x-websocket": True}),
]


def document():
    paths = {}
    for method, path, o in OPS:
        item = paths.setdefault(path, {})
        names = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        if names and "parameters" not in item:
            item["parameters"] = [{"name": n, "in": "path", "required": True, "schema": S, "description": P[n]}
                                  for n in names]
        item[method] = o
    # a 503 of /ready carries the same body
    paths["/ready"]["get"]["responses"]["503"] = answer("the database is not available", ref("Ready"))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Realtimeplot Server", "version": VERSION,
                 "description": "The HTTP API of Realtimeplot Server. Messages, check order and the deviations "
                                "from the original service: docs/api.md and ../shared/API.md. Every answer "
                                "carries X-Request-Id; every error is the Error envelope.",
                 "license": {"name": "MIT", "identifier": "MIT"}},
        "servers": [{"url": "http://127.0.0.1:5000"}],
        "tags": [{"name": t} for t in ["auth", "experiments", "data", "publish", "snapshots", "alarms", "live",
                                        "file", "operations"]],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "x-access-tokens",
                          "description": "the access_token of POST /auth/get_access_token"},
                "basic": {"type": "http", "scheme": "basic", "description": "login name and password"},
                "metricsBearer": {"type": "http", "scheme": "bearer", "description": "RTP_METRICS_TOKEN"},
            },
        },
    }


if __name__ == "__main__":
    json.dump(document(), sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
