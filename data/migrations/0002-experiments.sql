-- Experiments, their process variables, and which users are assigned to which experiment.
-- An experiment exists only while it has PVs: the store removes it with its last PV.
-- Booleans are INTEGER 0/1; @BIGINT@ is a 64-bit integer in either dialect (see rtp-database.c).
CREATE TABLE experiments (
  short_id TEXT PRIMARY KEY,
  human_readable_name TEXT
);

CREATE TABLE process_variables (
  pv_string TEXT PRIMARY KEY,
  human_readable_name TEXT,
  experiment_short_id TEXT NOT NULL REFERENCES experiments (short_id) ON DELETE CASCADE ON UPDATE CASCADE,
  available_for_mqtt_publish INTEGER NOT NULL DEFAULT 0,
  default_threshold_min @BIGINT@,
  default_threshold_max @BIGINT@
);

CREATE INDEX process_variables_experiment ON process_variables (experiment_short_id);

CREATE TABLE user_experiments (
  user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE ON UPDATE CASCADE,
  short_id TEXT NOT NULL REFERENCES experiments (short_id) ON DELETE CASCADE ON UPDATE CASCADE,
  PRIMARY KEY (user_id, short_id)
);

CREATE INDEX user_experiments_experiment ON user_experiments (short_id);
