-- See 0011. SQLite has one writer at a time: a row trigger is enough.
CREATE TRIGGER subscriptions_band_added AFTER INSERT ON subscriptions
BEGIN UPDATE rtp_band_changes SET n = n + 1; END;
CREATE TRIGGER subscriptions_band_removed AFTER DELETE ON subscriptions
BEGIN UPDATE rtp_band_changes SET n = n + 1; END;
CREATE TRIGGER subscriptions_band_changed
AFTER UPDATE OF user_id, pv_string, threshold_min, threshold_max, warning_min, warning_max ON subscriptions
BEGIN UPDATE rtp_band_changes SET n = n + 1; END;
CREATE TRIGGER process_variables_band_removed AFTER DELETE ON process_variables
BEGIN UPDATE rtp_band_changes SET n = n + 1; END;
