-- Threshold email subscriptions, the MQTT outbox, and the audit log of set-points.
-- Ids of the outbox and log are text (uuid) and order comes from created_us (@BIGINT@), so that
-- SQLite and PostgreSQL need no dialect-specific auto-increment.
CREATE TABLE subscriptions (
  user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE ON UPDATE CASCADE,
  pv_string TEXT NOT NULL REFERENCES process_variables (pv_string) ON DELETE CASCADE ON UPDATE CASCADE,
  email TEXT NOT NULL,
  threshold_min @BIGINT@ NOT NULL,
  threshold_max @BIGINT@ NOT NULL,
  PRIMARY KEY (user_id, pv_string)
);

CREATE INDEX subscriptions_pv ON subscriptions (pv_string);

-- Announcements that must reach the broker, kept until it acknowledged them.
CREATE TABLE mqtt_outbox (
  id TEXT PRIMARY KEY,
  created_us @BIGINT@ NOT NULL,
  topic TEXT NOT NULL,
  payload TEXT NOT NULL
);

CREATE INDEX mqtt_outbox_created ON mqtt_outbox (created_us);

CREATE TABLE publish_log (
  id TEXT PRIMARY KEY,
  created_us @BIGINT@ NOT NULL,
  user_id TEXT NOT NULL,
  pv_string TEXT NOT NULL,
  value TEXT NOT NULL,
  outcome TEXT NOT NULL
);

CREATE INDEX publish_log_pv ON publish_log (pv_string, created_us);
