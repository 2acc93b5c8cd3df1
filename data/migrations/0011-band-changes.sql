-- Which in-band MQTT values the leading instance may settle without judging them depends on the
-- subscriptions' bands only (rtp-value-gate.c). Alarm transitions and reminders write to the
-- database at every value of an alarmed PV; this counter moves only when a band may have changed:
-- a subscription added, removed, re-pointed or given other thresholds, or a PV removed (migrations
-- 0012 on SQLite and 0013 on PostgreSQL keep it).
CREATE TABLE rtp_band_changes (n @BIGINT@ NOT NULL, last_xact @BIGINT@);
INSERT INTO rtp_band_changes (n) VALUES (0);
