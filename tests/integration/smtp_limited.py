"""An aiosmtpd handler for tests: a Maildir like aiosmtpd.handlers.Mailbox that takes at most N
messages in one SMTP session and answers the next with 421, as relays that limit a connection's
messages do. Used as `python3 -m aiosmtpd -c smtp_limited.LimitedMailbox <maildir> <N>`."""
from aiosmtpd.handlers import Mailbox


class LimitedMailbox(Mailbox):
    def __init__(self, mail_dir, per_session):
        super().__init__(mail_dir)
        self.per_session = per_session

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 2:
            parser.error("usage: <maildir> <messages per session>")
        return cls(args[0], int(args[1]))

    async def handle_DATA(self, server, session, envelope):
        taken = getattr(session, "rtp_taken", 0)
        if taken >= self.per_session:
            return "421 4.7.0 Too many messages in one session, closing"
        session.rtp_taken = taken + 1
        return await super().handle_DATA(server, session, envelope)
