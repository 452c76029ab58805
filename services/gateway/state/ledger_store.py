"""The privacy ledger in SQL: per (tenant, subject) one summary row and append-only entries.

A charge locks the subject's summary row (SELECT ... FOR UPDATE on PostgreSQL; on SQLite the
write transaction already holds the database write lock), recomposes every charged event plus
the new ones, refuses with FailedPrecondition when the composition would pass the cap, and
otherwise appends the entry and updates the summary, all in the caller's transaction. Two
replicas charging one subject therefore serialise on that row and can never overspend.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from veil.db import Database, insert_ignore
from veil.db.clock import Clock, utcnow
from veil.errors import FailedPrecondition, NotFound, quoted
from veil.ledger import (BudgetExceeded, LedgerConfig, LedgerEvent, ReleaseSpend, admissible_epsilon, compose,
                         events_from_json, events_to_json)
from services.gateway.state import tables as t
from services.gateway.state.models import Charge, LedgerEntryRecord, LedgerSummary, require_id
from services.gateway.state.rows import ledger_entry_record


class LedgerStore:
    def __init__(self, db: Database, config: LedgerConfig, clock: Clock = utcnow) -> None:
        self._db = db
        self.config = config
        self._clock = clock

    def summary(self, tenant: str, subject_id: str) -> LedgerSummary:
        """Spent budget of a subject; NotFound when the tenant never charged this subject."""
        with self._db.read() as conn:
            return self.summary_in(conn, tenant, subject_id)

    def summary_in(self, conn: Connection, tenant: str, subject_id: str) -> LedgerSummary:
        row = self._subject_row(conn, tenant, subject_id)
        if row is None:
            raise NotFound(f"no ledger for subject {quoted(subject_id)}")
        events = self._events(conn, tenant, subject_id)
        if row.delta == self.config.delta:
            return self._summary(subject_id, row.composed_epsilon, row.sum_epsilon,
                                 row.entry_count, events)
        # The configured delta changed since the last charge (or a migration merged the row):
        # report at the configured one.
        composition = compose(events, self.config.delta, self.config.discretization)
        return self._summary(subject_id, composition.composed_epsilon, composition.sum_epsilon,
                             row.entry_count, events)

    def entries(self, tenant: str, subject_id: str) -> Sequence[LedgerEntryRecord]:
        entries = t.ledger_entries
        with self._db.read() as conn:
            rows = conn.execute(
                sa.select(entries)
                .where(entries.c.tenant == tenant, entries.c.subject_id == subject_id)
                .order_by(entries.c.created_at, entries.c.entry_id)).all()
        return [ledger_entry_record(r) for r in rows]

    def charge(self, tenant: str, subject_id: str, spend: ReleaseSpend,
               session_id: str | None = None) -> Charge:
        """Charge `spend` in a transaction of its own (see `charge_in`)."""
        with self._db.write() as conn:
            return self.charge_in(conn, tenant, subject_id, spend, session_id)

    def lock_subject(self, conn: Connection, tenant: str, subject_id: str):
        """Create the subject's summary row if needed, lock it until `conn` ends, return it."""
        require_id(tenant, "tenant")
        require_id(subject_id, "subject id", 256)
        insert_ignore(conn, t.ledger_subjects, {
            "tenant": tenant, "subject_id": subject_id, "composed_epsilon": 0.0,
            "sum_epsilon": 0.0, "delta": self.config.delta, "entry_count": 0,
            "updated_at": self._clock()}, ["tenant", "subject_id"])
        return self._subject_row(conn, tenant, subject_id, lock=True)

    def charge_in(self, conn: Connection, tenant: str, subject_id: str, spend: ReleaseSpend,
                  session_id: str | None) -> Charge:
        """Check the cap and charge `spend` inside `conn`'s write transaction.

        BudgetExceeded (a FailedPrecondition; nothing written) when the composed eps after the
        charge would pass the cap; FailedPrecondition when this receipt was already charged to
        the subject.
        """
        subject = self.lock_subject(conn, tenant, subject_id)
        entries = t.ledger_entries
        duplicate = conn.execute(sa.select(entries.c.entry_id).where(
            entries.c.tenant == tenant, entries.c.subject_id == subject_id,
            entries.c.receipt_id == spend.receipt_id)).first()
        if duplicate is not None:
            raise FailedPrecondition(f"receipt {quoted(spend.receipt_id)} was already charged to "
                                     f"subject {quoted(subject_id)}")
        charged = self._events(conn, tenant, subject_id)
        new_events = spend.events()
        after = compose([*charged, *new_events], self.config.delta, self.config.discretization)
        if after.composed_epsilon > self.config.cap:
            spent = compose(charged, self.config.delta, self.config.discretization)
            raise BudgetExceeded(
                f"release refused: subject {subject_id!r} would reach composed epsilon "
                f"{after.composed_epsilon:.4f} > cap {self.config.cap:g} (spent "
                f"{spent.composed_epsilon:.4f} at delta {self.config.delta:g}); nothing was "
                f"charged or published")
        now = self._clock()
        entry = LedgerEntryRecord(
            entry_id=str(uuid.uuid4()), subject_id=subject_id, session_id=session_id,
            receipt_id=spend.receipt_id, epsilon=spend.nominal_epsilon, events=tuple(new_events),
            composed_after=after.composed_epsilon, created_at=now)
        conn.execute(sa.insert(entries).values(
            entry_id=entry.entry_id, tenant=tenant, subject_id=subject_id, session_id=session_id,
            receipt_id=entry.receipt_id, events=events_to_json(new_events), epsilon=entry.epsilon,
            composed_after=entry.composed_after, created_at=now))
        count = subject.entry_count + 1
        conn.execute(sa.update(t.ledger_subjects).where(
            t.ledger_subjects.c.tenant == tenant, t.ledger_subjects.c.subject_id == subject_id
        ).values(composed_epsilon=after.composed_epsilon, sum_epsilon=after.sum_epsilon,
                 delta=self.config.delta, entry_count=count, updated_at=now))
        return Charge(entry, self._summary(subject_id, after.composed_epsilon, after.sum_epsilon,
                                           count, [*charged, *new_events]))

    def _summary(self, subject_id: str, composed: float, total: float, count: int,
                 events: Sequence[LedgerEvent]) -> LedgerSummary:
        return LedgerSummary(subject_id=subject_id, composed_epsilon=composed, sum_epsilon=total,
                             delta=self.config.delta, cap=self.config.cap, entry_count=count,
                             remaining=admissible_epsilon(events, self.config))

    @staticmethod
    def _subject_row(conn: Connection, tenant: str, subject_id: str, lock: bool = False):
        query = sa.select(t.ledger_subjects).where(t.ledger_subjects.c.tenant == tenant,
                                                   t.ledger_subjects.c.subject_id == subject_id)
        return conn.execute(query.with_for_update() if lock else query).first()

    @staticmethod
    def _events(conn: Connection, tenant: str, subject_id: str):
        entries = t.ledger_entries
        rows = conn.execute(sa.select(entries.c.events).where(
            entries.c.tenant == tenant, entries.c.subject_id == subject_id)).scalars()
        return [event for stored in rows for event in events_from_json(stored)]
