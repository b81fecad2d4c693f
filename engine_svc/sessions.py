"""Which commands of each gateway session the engine has applied, so a resend is not applied twice.

A gateway numbers its commands 1, 2, 3... per session (one session per gateway process) and
sends one again after a Redis reconnect when it has not seen the answer. Commands of a session
mostly arrive in order, so the ledger keeps a watermark (every sequence up to it applied) and
the few applied beyond it; a gap closes when the missing command arrives. Pure and replayable:
it is rebuilt from the logged commands and kept in snapshots.
"""

from __future__ import annotations

DAY_NS = 24 * 3600 * 1_000_000_000
IDLE_SESSION_NS = DAY_NS
"""A session with no command for this long of log time is forgotten at the next day close. Its
gateway is gone or has moved on: a gateway with nothing pending opens a new session after an
hour without commands (gateway_svc.engine_client.SESSION_IDLE_SECONDS), and one with something
pending resends it within seconds of Redis answering."""


class SessionLedger:
    __slots__ = ("applied_through", "applied_after", "last_applied_ns")

    def __init__(self) -> None:
        self.applied_through = 0
        self.applied_after: set[int] = set()
        self.last_applied_ns = 0

    def is_applied(self, sequence: int) -> bool:
        return sequence <= self.applied_through or sequence in self.applied_after

    def record(self, sequence: int, now: int) -> None:
        self.last_applied_ns = now
        if self.is_applied(sequence):
            return
        if sequence != self.applied_through + 1:
            self.applied_after.add(sequence)
            return
        self.applied_through = sequence
        after = self.applied_after
        while self.applied_through + 1 in after:
            self.applied_through += 1
            after.remove(self.applied_through)


class CommandLedger:
    """Every session's ledger. A command without a session (the engine's own) is never a resend."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionLedger] = {}

    def is_applied(self, session_id: str, sequence: int) -> bool:
        if not session_id:
            return False
        ledger = self.sessions.get(session_id)
        return ledger is not None and ledger.is_applied(sequence)

    def record(self, session_id: str, sequence: int, now: int) -> None:
        if not session_id:
            return
        ledger = self.sessions.get(session_id)
        if ledger is None:
            ledger = self.sessions[session_id] = SessionLedger()
        ledger.record(sequence, now)

    def forget_idle(self, now: int) -> None:
        """Drop sessions idle for IDLE_SESSION_NS (called at day close), so memory stays bounded."""
        idle = [
            session_id
            for session_id, ledger in self.sessions.items()
            if now - ledger.last_applied_ns >= IDLE_SESSION_NS
        ]
        for session_id in idle:
            del self.sessions[session_id]
