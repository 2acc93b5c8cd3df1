-- Snapshots of an experiment's set-points (issue "… snapshots that save, compare and restore"): the
-- value of every PV at a moment, kept to be compared with later values and written back. The saved
-- values name their PV without a reference: a PV deleted later keeps its saved value visible, and
-- is only left out of restores. A snapshot goes with its experiment.
CREATE TABLE snapshots (
  id TEXT PRIMARY KEY,
  experiment_short_id TEXT NOT NULL REFERENCES experiments (short_id) ON DELETE CASCADE ON UPDATE CASCADE,
  name TEXT NOT NULL,
  comment TEXT,
  taken_us @BIGINT@ NOT NULL,
  taken_by TEXT NOT NULL,
  at_us @BIGINT@,
  UNIQUE (experiment_short_id, name)
);

CREATE TABLE snapshot_values (
  snapshot_id TEXT NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  pv_string TEXT NOT NULL,
  value TEXT,
  time_us @BIGINT@,
  PRIMARY KEY (snapshot_id, pv_string)
);
