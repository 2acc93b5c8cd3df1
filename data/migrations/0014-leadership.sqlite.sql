-- Several servers may share one SQLite file; the jobs only one instance may run (the outboxes of
-- mail, webhooks and MQTT, the monitor) run on the one holding this lease (rtp_database_try_leadership).
-- PostgreSQL decides with a session-level advisory lock instead. holder: "<host> <pid> <random>";
-- expires_us: wall-clock microseconds; the holder renews it well before, and gives it up when it stops.
CREATE TABLE rtp_leader (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL DEFAULT '',
                         expires_us @BIGINT@ NOT NULL DEFAULT 0);
INSERT INTO rtp_leader (id) VALUES (1);
