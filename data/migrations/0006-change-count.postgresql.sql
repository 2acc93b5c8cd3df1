-- Several instances share one PostgreSQL database, and each keeps users, experiments and process
-- variables it read between requests; it must know of a change made elsewhere (by another
-- instance or any other client) before its next answer. Every committed change to these tables
-- raises a counter that an instance reads in one round trip before using what it kept: MVCC
-- makes a change committed before that read visible to it. (LISTEN/NOTIFY is not enough: a
-- notification can arrive after the change's commit has been answered.)
--
-- The counter is raised by deferred constraint triggers, at commit, once per transaction:
-- a transaction takes the counter's row lock last, after all its other locks, so waiting
-- for it cannot close a deadlock. TRUNCATE (no constraint triggers) raises it at once.
CREATE TABLE rtp_change_count (n BIGINT NOT NULL, last_xact BIGINT);
INSERT INTO rtp_change_count (n) VALUES (0);

CREATE FUNCTION rtp_count_change () RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE rtp_change_count SET n = n + 1, last_xact = txid_current ()
    WHERE last_xact IS DISTINCT FROM txid_current ();
  RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE ON users
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rtp_count_change ();
CREATE CONSTRAINT TRIGGER user_experiments_changed AFTER INSERT OR UPDATE OR DELETE ON user_experiments
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rtp_count_change ();
CREATE CONSTRAINT TRIGGER experiments_changed AFTER INSERT OR UPDATE OR DELETE ON experiments
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rtp_count_change ();
CREATE CONSTRAINT TRIGGER process_variables_changed AFTER INSERT OR UPDATE OR DELETE ON process_variables
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rtp_count_change ();

CREATE TRIGGER users_truncated AFTER TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION rtp_count_change ();
CREATE TRIGGER user_experiments_truncated AFTER TRUNCATE ON user_experiments
  FOR EACH STATEMENT EXECUTE FUNCTION rtp_count_change ();
CREATE TRIGGER experiments_truncated AFTER TRUNCATE ON experiments FOR EACH STATEMENT EXECUTE FUNCTION rtp_count_change ();
CREATE TRIGGER process_variables_truncated AFTER TRUNCATE ON process_variables
  FOR EACH STATEMENT EXECUTE FUNCTION rtp_count_change ();
