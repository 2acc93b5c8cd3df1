-- Alert episodes of the in-process threshold monitor, and the mails they send. Stored, so
-- that a restart in the middle of an episode sends no duplicate and a failed mail is retried.
CREATE TABLE alert_episodes (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE ON UPDATE CASCADE,
  pv_string TEXT NOT NULL REFERENCES process_variables (pv_string) ON DELETE CASCADE ON UPDATE CASCADE,
  opened_us @BIGINT@ NOT NULL,
  closed_us @BIGINT@,
  last_notified_us @BIGINT@ NOT NULL,
  breach_value TEXT NOT NULL,
  threshold_min @BIGINT@ NOT NULL,
  threshold_max @BIGINT@ NOT NULL
);

CREATE INDEX alert_episodes_pv ON alert_episodes (pv_string, user_id);

CREATE TABLE alert_mails (
  id TEXT PRIMARY KEY,
  episode_id TEXT NOT NULL REFERENCES alert_episodes (id) ON DELETE CASCADE,
  created_us @BIGINT@ NOT NULL,
  recipient TEXT NOT NULL,
  subject TEXT NOT NULL,
  body TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_us @BIGINT@ NOT NULL,
  sent_us @BIGINT@,
  last_error TEXT
);

CREATE INDEX alert_mails_due ON alert_mails (sent_us, next_attempt_us);
