-- What an instance keeps between requests and between values (users, assignments, experiments,
-- PVs, subscriptions, the state of open alarms) stays valid while this counter stands still. Every
-- committed change to those rows raises it, whoever makes it; a commit that changes nothing kept
-- (a mail or webhook marked sent, the outbox, an alarm's latest value, its history) leaves it, so
-- that an alarm flood's hundreds of notifications do not make every alarmed PV read its
-- subscriptions again at each one. The WAL index's header tells cheaply that something was
-- committed; this counter, read then, whether it was something kept (rtp-database.c). On
-- PostgreSQL the same counter is 0006's, raised for the same tables (0015).
CREATE TABLE rtp_change_count (n @BIGINT@ NOT NULL);
INSERT INTO rtp_change_count (n) VALUES (0);

CREATE TRIGGER users_added AFTER INSERT ON users BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER users_changed AFTER UPDATE ON users BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER users_removed AFTER DELETE ON users BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER user_experiments_added AFTER INSERT ON user_experiments
BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER user_experiments_changed AFTER UPDATE ON user_experiments
BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER user_experiments_removed AFTER DELETE ON user_experiments
BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER experiments_added AFTER INSERT ON experiments BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER experiments_changed AFTER UPDATE ON experiments BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER experiments_removed AFTER DELETE ON experiments BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER process_variables_added AFTER INSERT ON process_variables
BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER process_variables_changed AFTER UPDATE ON process_variables
BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER process_variables_removed AFTER DELETE ON process_variables
BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER subscriptions_added AFTER INSERT ON subscriptions BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER subscriptions_changed AFTER UPDATE ON subscriptions
BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER subscriptions_removed AFTER DELETE ON subscriptions
BEGIN UPDATE rtp_change_count SET n = n + 1; END;
-- an alarm's state as the alerter keeps it (rtp-alerter.c, OPEN_ALARM_COLUMNS); not its latest
-- value, written once a second while it is open
CREATE TRIGGER alert_episodes_added AFTER INSERT ON alert_episodes BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER alert_episodes_changed
AFTER UPDATE OF id, user_id, pv_string, opened_us, closed_us, last_notified_us, severity, active, acknowledged_by,
  shelved_until_us ON alert_episodes
BEGIN UPDATE rtp_change_count SET n = n + 1; END;
CREATE TRIGGER alert_episodes_removed AFTER DELETE ON alert_episodes
BEGIN UPDATE rtp_change_count SET n = n + 1; END;
