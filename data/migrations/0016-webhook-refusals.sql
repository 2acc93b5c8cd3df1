-- A webhook post the receiver refused for good (a 4xx answer but 408, 425 and 429: it would refuse
-- it again) is not retried: it is kept, with its last_error, as refused at this time. The posts go
-- out strictly in order (a post waiting out its back-off holds the later ones), so that a refused
-- one must leave the queue rather than hold it for ever.
ALTER TABLE alarm_webhooks ADD COLUMN refused_us @BIGINT@;
