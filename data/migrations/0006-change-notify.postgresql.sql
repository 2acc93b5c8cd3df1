-- Several instances share one PostgreSQL database, and each keeps what it read about users
-- (who they are, their password version, their experiments) between requests. Every change
-- to these tables, by any instance or any other client, is announced on the channel
-- rtp_changes when its transaction commits; the instances LISTEN and forget what they kept.
-- (PostgreSQL only: on SQLite the instances see changes in the WAL index instead.)
CREATE FUNCTION rtp_notify_change () RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify ('rtp_changes', TG_TABLE_NAME);
  RETURN NULL;
END
$$;

CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION rtp_notify_change ();
CREATE TRIGGER user_experiments_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON user_experiments
  FOR EACH STATEMENT EXECUTE FUNCTION rtp_notify_change ();
CREATE TRIGGER experiments_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON experiments
  FOR EACH STATEMENT EXECUTE FUNCTION rtp_notify_change ();
