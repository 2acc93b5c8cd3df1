"""An aiosmtpd handler for tests: a Maildir like aiosmtpd.handlers.Mailbox that takes at most N
messages in one SMTP session and answers the next with 421, as relays that limit a connection's
messages do; and that may take its time over the first message it receives (a slow relay).
Used as `python3 -m aiosmtpd -c smtp_limited.LimitedMailbox <maildir> <N> [<first delay in s>]`."""
import asyncio

from aiosmtpd.handlers import Mailbox


class LimitedMailbox(Mailbox):
    def __init__(self, mail_dir, per_session, first_delay=0.0):
        super().__init__(mail_dir)
        self.per_session = per_session
        self.first_delay = first_delay

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) not in (2, 3):
            parser.error("usage: <maildir> <messages per session> [<first delay in s>]")
        return cls(args[0], int(args[1]), float(args[2]) if len(args) == 3 else 0.0)

    async def handle_DATA(self, server, session, envelope):
        taken = getattr(session, "rtp_taken", 0)
        if taken >= self.per_session:
            return "421 4.7.0 Too many messages in one session, closing"
        session.rtp_taken = taken + 1
        delay, self.first_delay = self.first_delay, 0.0
        await asyncio.sleep(delay)
        return await super().handle_DATA(server, session, envelope)
