-- Alarms as control rooms know them (issue "Alarms"): a subscription may add a MINOR band inside
-- its MAJOR threshold band, a delay, a latch and a clear notification; an alert episode becomes an
-- alarm with a severity, acknowledgement, shelving and a history of every transition; webhooks
-- leave through a durable outbox like the mails. Defaults keep every existing row as it was.
ALTER TABLE subscriptions ADD COLUMN warning_min @BIGINT@;
ALTER TABLE subscriptions ADD COLUMN warning_max @BIGINT@;
ALTER TABLE subscriptions ADD COLUMN delay_s INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN latch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN notify_clear INTEGER NOT NULL DEFAULT 0;
-- since when the value has been out of band while the delay runs (NULL: in band)
ALTER TABLE subscriptions ADD COLUMN out_since_us @BIGINT@;

ALTER TABLE alert_episodes ADD COLUMN severity TEXT NOT NULL DEFAULT 'MAJOR';
ALTER TABLE alert_episodes ADD COLUMN value TEXT;
ALTER TABLE alert_episodes ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alert_episodes ADD COLUMN last_change_us @BIGINT@;
ALTER TABLE alert_episodes ADD COLUMN acknowledged_by TEXT;
ALTER TABLE alert_episodes ADD COLUMN acknowledged_us @BIGINT@;
ALTER TABLE alert_episodes ADD COLUMN acknowledge_comment TEXT;
ALTER TABLE alert_episodes ADD COLUMN shelved_by TEXT;
ALTER TABLE alert_episodes ADD COLUMN shelved_until_us @BIGINT@;
ALTER TABLE alert_episodes ADD COLUMN shelve_reason TEXT;
ALTER TABLE alert_episodes ADD COLUMN latched INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alert_episodes ADD COLUMN notifications INTEGER NOT NULL DEFAULT 0;
UPDATE alert_episodes SET value = breach_value, last_change_us = COALESCE(closed_us, opened_us),
  active = CASE WHEN closed_us IS NULL THEN 1 ELSE 0 END,
  notifications = (SELECT COUNT(*) FROM alert_mails m WHERE m.episode_id = alert_episodes.id);

CREATE INDEX alert_episodes_open ON alert_episodes (closed_us, pv_string);

CREATE TABLE alarm_history (
  id TEXT PRIMARY KEY,
  alarm_id TEXT NOT NULL REFERENCES alert_episodes (id) ON DELETE CASCADE,
  time_us @BIGINT@ NOT NULL,
  seq INTEGER NOT NULL,
  event TEXT NOT NULL,
  severity TEXT NOT NULL,
  value TEXT,
  by_user TEXT,
  comment TEXT,
  channel TEXT
);

CREATE INDEX alarm_history_alarm ON alarm_history (alarm_id, time_us, seq);

CREATE TABLE alarm_webhooks (
  id TEXT PRIMARY KEY,
  alarm_id TEXT NOT NULL REFERENCES alert_episodes (id) ON DELETE CASCADE,
  created_us @BIGINT@ NOT NULL,
  payload TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_us @BIGINT@ NOT NULL,
  sent_us @BIGINT@,
  last_error TEXT
);

CREATE INDEX alarm_webhooks_due ON alarm_webhooks (sent_us, next_attempt_us);
