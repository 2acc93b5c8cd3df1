-- A webhook post the receiver refused for good (400, 413, 415 or 422: it refuses the post's body and
-- would refuse it again) is not retried: it is kept, with its last_error, as refused at this time. The posts go
-- out strictly in order (a post waiting out its back-off holds the later ones), so that a refused
-- one must leave the queue rather than hold it for ever.
ALTER TABLE alarm_webhooks ADD COLUMN refused_us @BIGINT@;
