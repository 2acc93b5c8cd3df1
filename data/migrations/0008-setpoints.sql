-- Set-points with guard rails (issue "Set-points with guard rails…"): a PV may limit the values this
-- server publishes (a range, the largest step from the last known value) and name the PV that reads
-- the result back. Numbers are kept as the text that was given (NULL: no rule), so that an export
-- writes them as they were typed. The audit log records the value before the write, the reason of
-- a refusal and what an entry reverted or restored.
ALTER TABLE process_variables ADD COLUMN setpoint_min TEXT;
ALTER TABLE process_variables ADD COLUMN setpoint_max TEXT;
ALTER TABLE process_variables ADD COLUMN setpoint_max_step TEXT;
ALTER TABLE process_variables ADD COLUMN readback_pv TEXT;

ALTER TABLE publish_log ADD COLUMN previous TEXT;
ALTER TABLE publish_log ADD COLUMN reason TEXT;
ALTER TABLE publish_log ADD COLUMN readback TEXT;
ALTER TABLE publish_log ADD COLUMN reverts TEXT;
ALTER TABLE publish_log ADD COLUMN snapshot TEXT;

-- the outcomes of earlier entries in the new words
UPDATE publish_log SET outcome = 'published' WHERE outcome = 'acknowledged';
UPDATE publish_log SET outcome = 'unknown', reason = 'no acknowledgement in time'
  WHERE outcome = 'unknown: no acknowledgement in time';
UPDATE publish_log SET outcome = 'failed', reason = 'broker unreachable' WHERE outcome = 'failed: broker unreachable';
