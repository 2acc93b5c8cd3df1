-- See 0011. On PostgreSQL a change of another instance is learnt of through the change counter of
-- 0006, so the same changes raise it too (which also makes the leader's kept subscriptions follow
-- them). Deferred constraint triggers, once per transaction, as in 0006: the change counter's row
-- is locked first and the band counter's second, in every transaction, so that two of them cannot
-- wait for each other.
CREATE FUNCTION rtp_count_band_change () RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE rtp_change_count SET n = n + 1, last_xact = txid_current ()
    WHERE last_xact IS DISTINCT FROM txid_current ();
  UPDATE rtp_band_changes SET n = n + 1, last_xact = txid_current ()
    WHERE last_xact IS DISTINCT FROM txid_current ();
  RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER subscriptions_band_changed
  AFTER INSERT OR DELETE OR UPDATE OF user_id, pv_string, threshold_min, threshold_max, warning_min, warning_max
  ON subscriptions DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rtp_count_band_change ();
CREATE CONSTRAINT TRIGGER process_variables_band_removed AFTER DELETE ON process_variables
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rtp_count_band_change ();
CREATE TRIGGER subscriptions_band_truncated AFTER TRUNCATE ON subscriptions
  FOR EACH STATEMENT EXECUTE FUNCTION rtp_count_band_change ();
