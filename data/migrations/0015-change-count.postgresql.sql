-- See 0014: 0006's counter also moves with every change to subscriptions (not only their bands,
-- 0013) and to the state of alarms as the alerter keeps it — not an alarm's latest value, nor the
-- outbox, nor mails marked sent. An instance's own writes no longer move what it kept by
-- themselves: it reads this counter after each of its commits, as it does for other instances'.
-- Deferred constraint triggers, once per transaction, as in 0006.
CREATE CONSTRAINT TRIGGER subscriptions_changed AFTER INSERT OR UPDATE OR DELETE ON subscriptions
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rtp_count_change ();
CREATE CONSTRAINT TRIGGER alert_episodes_changed
  AFTER INSERT OR DELETE OR UPDATE OF id, user_id, pv_string, opened_us, closed_us, last_notified_us, severity, active,
  acknowledged_by, shelved_until_us
  ON alert_episodes DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rtp_count_change ();
CREATE TRIGGER subscriptions_truncated AFTER TRUNCATE ON subscriptions FOR EACH STATEMENT EXECUTE FUNCTION rtp_count_change ();
CREATE TRIGGER alert_episodes_truncated AFTER TRUNCATE ON alert_episodes
  FOR EACH STATEMENT EXECUTE FUNCTION rtp_count_change ();
