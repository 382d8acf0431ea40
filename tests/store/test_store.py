"""The store on SQLite and PostgreSQL: subscribers, the ledger's guarantees, and migrations."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from digest.models import BatchStatus, DeliveryStatus, IssueStatus, SubscriberStatus
from digest.store import ClaimCursor, Claimed, NewSubscriber, Store
from digest.store.ledger import IN_INDEX_ORDER, claim_query, next_variant
from digest.store.migrations import HEAD
from digest.store.schema import batches, deliveries, metadata, subscribers
from factories import KEY, NOW, VARIANT
from factories import record_issue as record


def queue(store: Store, key: str = KEY) -> int:
    """Queue every waiting subscriber for the whole issue, as the delivery layer does."""
    return store.ledger.enqueue(key, {choice: "all" for choice in store.ledger.choices_to_queue(key)})


def people(n: int, start: int = 0) -> list[NewSubscriber]:
    return [NewSubscriber(f"Reader{i}@Example.org", f"Reader {i}") for i in range(start, start + n)]


def queued_and_claimed(store: Store, readers: int, size: int) -> Claimed:
    """``readers`` subscribers queued for the recorded issue, and a first batch of ``size`` claimed."""
    store.subscribers.merge(people(readers))
    record(store)
    queue(store)
    claimed = store.ledger.claim(KEY, size, "outbox")
    assert claimed is not None
    return claimed


def drain(store: Store, key: str = KEY, size: int = 10, sending: float = 0.0) -> list[str]:
    """Claim and finish batches until none is left; ``sending`` stands for the transport's time."""
    emails = []
    while claimed := store.ledger.claim(key, size, "outbox"):
        emails += [email for _, _, email, _ in claimed.recipients]
        time.sleep(sending)
        store.ledger.finish(claimed, {d: ("submitted", "") for d, *_ in claimed.recipients})
    return emails


def test_email_is_unique_regardless_of_case(store):
    store.subscribers.merge([NewSubscriber("Ann@Example.org", "Ann")])
    report = store.subscribers.merge([NewSubscriber("ann@example.ORG", "Ann B")])
    assert (report.added, report.updated) == (0, 1)
    (only,) = list(store.subscribers.every())
    assert (only.email, only.name) == ("Ann@Example.org", "Ann B")


def test_suppressed_addresses_stay_suppressed_unless_resubscribed(store):
    store.subscribers.merge(people(3))
    store.subscribers.set_status("reader1@example.org", "unsubscribed")
    store.subscribers.set_status("reader2@example.org", "bounced")
    report = store.subscribers.merge(people(3))
    assert sorted(report.kept_suppressed) == ["Reader1@Example.org", "Reader2@Example.org"]
    assert store.subscribers.counts() == {"active": 1, "unsubscribed": 1, "bounced": 1}
    report = store.subscribers.merge(people(1, start=1), resubscribe=True)
    assert report.resubscribed == 1
    assert store.subscribers.counts() == {"active": 2, "bounced": 1}


def test_recording_an_issue_twice_keeps_the_first_snapshot(store):
    assert record(store) is True
    assert (
        store.issues.record(
            KEY, subject="Other", window=(NOW, NOW), article_count=1, summary={}, rendered={"all": ("Other", "x", "y")}
        )
        is False
    )
    assert store.issues.variant(KEY, "all") == (VARIANT.subject, VARIANT.html, VARIANT.text)


def test_each_subscriber_is_queued_once_and_newcomers_join(store):
    store.subscribers.merge(people(25))
    record(store)
    assert queue(store) == 25
    assert queue(store) == 0
    first = drain(store)
    assert len(first) == len(set(first)) == 25
    store.subscribers.merge(people(2, start=25))
    assert queue(store) == 2
    assert sorted(drain(store)) == ["Reader25@Example.org", "Reader26@Example.org"]
    assert store.ledger.counts(KEY) == {"submitted": 27}


def test_enqueue_takes_a_variant_per_choice_and_skips_choices_with_no_article(store):
    store.subscribers.merge(
        [
            NewSubscriber("ann@example.org"),
            NewSubscriber("bo@example.org"),
            NewSubscriber("cy@example.org", sections=("Europe",)),
            NewSubscriber("di@example.org", sections=("Asia",)),
        ]
    )
    store.subscribers.set_status("di@example.org", SubscriberStatus.UNSUBSCRIBED)
    record(store)
    assert store.ledger.choices_to_queue(KEY) == {(), ("Europe",)}  # Di left: nobody needs her variant
    assert store.ledger.enqueue(KEY, {(): "all", ("Europe",): None}) == 3
    assert store.ledger.counts(KEY) == {"pending": 2, "skipped": 1}
    with store.engine.connect() as conn:
        skipped = conn.execute(
            sa.select(deliveries.c.variant, deliveries.c.error).where(deliveries.c.status == "skipped")
        )
        assert skipped.all() == [("none", "no article in the chosen sections this week")]
    assert drain(store) == ["ann@example.org", "bo@example.org"]


def test_enqueue_queues_every_choice_in_statements_that_do_not_grow_with_the_readers(store):
    """A million readers who chose sections must not pass through Python (rows read and inserted
    in chunks held the whole list: 1 GB at a million): the statements are as many for 2,500
    readers as for 3, and each reader still gets their own choice's variant or is skipped."""
    choices = [(), ("Europe",), ("Asia",)]

    def readers(n: int, start: int) -> list[NewSubscriber]:
        return [NewSubscriber(f"r{i}@example.org", sections=choices[i % 3]) for i in range(start, start + n)]

    def statements_to_queue(key: str) -> int:
        executed = []
        listener = lambda *_: executed.append(1)  # noqa: E731
        sa.event.listen(store.engine, "before_cursor_execute", listener)
        try:
            variants = {(): "all", ("Europe",): "1", ("Asia",): None}
            assert store.ledger.enqueue(key, variants) > 0
        finally:
            sa.event.remove(store.engine, "before_cursor_execute", listener)
        return len(executed)

    store.subscribers.merge(readers(3, 0))
    record(store)
    few = statements_to_queue(KEY)
    store.subscribers.merge(readers(2_500, 3))
    record(store, key="2026-W49")
    assert statements_to_queue("2026-W49") == few
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(deliveries.c.variant, deliveries.c.status, sa.func.count())
            .where(deliveries.c.issue_key == "2026-W49")
            .group_by(deliveries.c.variant, deliveries.c.status)
        ).all()
    assert sorted(rows) == [("1", "pending", 834), ("all", "pending", 835), ("none", "skipped", 834)]


def test_only_the_choices_of_subscribers_not_yet_queued_are_asked_for(store):
    store.subscribers.merge([NewSubscriber("ann@example.org"), NewSubscriber("bo@example.org", sections=("Europe",))])
    record(store)
    assert queue(store) == 2
    assert store.ledger.choices_to_queue(KEY) == set()
    store.subscribers.set_sections(store.subscribers.by_email("ann@example.org").id, ["Asia"])
    assert store.ledger.choices_to_queue(KEY) == set()  # Ann has this issue already
    store.subscribers.merge([NewSubscriber("cy@example.org", sections=("Asia",))])
    assert store.ledger.choices_to_queue(KEY) == {("Asia",)}
    assert store.ledger.enqueue(KEY, {}) == 0  # a choice without a variant waits for the next enqueue
    assert store.ledger.enqueue(KEY, {("Asia",): "1"}) == 1
    assert store.ledger.counts(KEY) == {"pending": 3}


def test_no_variant_is_rendered_for_a_subscriber_already_queued(store, tmp_path):
    from digest.delivery import queueing
    from digest.models import Issue, Section, Window, issue_record
    from factories import article, settings

    config = settings(tmp_path)
    lead = article("lead")
    issue = Issue(KEY, Window(NOW - timedelta(days=7), NOW), (Section("Asia-Pacific", (lead,)),), lead)
    store.subscribers.merge([NewSubscriber("ann@example.org")])
    store.issues.record(
        KEY,
        subject="Subject",
        window=(NOW - timedelta(days=7), NOW),
        article_count=1,
        summary=issue_record(issue, ()),
        rendered={"all": ("Subject", "<p>html</p>", "text")},
    )
    assert queueing.enqueue(store, config, KEY) == 1
    ann = store.subscribers.by_email("ann@example.org")
    store.subscribers.set_sections(ann.id, ["Asia-Pacific"])  # after she was queued with the whole issue
    assert queueing.enqueue(store, config, KEY) == 0
    assert store.issues.variant_names(KEY) == {"all"}  # nothing rendered for a choice nobody is sent
    store.subscribers.merge([NewSubscriber("bo@example.org", sections=("Asia-Pacific",))])
    assert queueing.enqueue(store, config, KEY) == 1
    assert store.issues.variant_names(KEY) == {"all", "1"}


def test_states_read_back_as_their_enum_members_with_the_same_stored_words(store):
    store.subscribers.merge(people(2))
    assert store.subscribers.suppress(store.subscribers.by_email("reader0@example.org").id, SubscriberStatus.BOUNCED)
    assert not store.subscribers.suppress(10_000, SubscriberStatus.BOUNCED)
    store.subscribers.suppress(store.subscribers.by_email("reader0@example.org").id, SubscriberStatus.UNSUBSCRIBED)
    bounced = store.subscribers.by_email("reader0@example.org")
    assert bounced.status is SubscriberStatus.BOUNCED  # a weaker suppression never replaces a stronger one
    record(store)
    assert store.issues.get(KEY).status is IssueStatus.SENDING
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT status FROM subscribers ORDER BY id").scalars().all()
    assert stored == ["bounced", "active"]
    assert [s.value for s in SubscriberStatus] == ["active", "unsubscribed", "bounced", "complained"]
    assert [s.value for s in DeliveryStatus] == ["pending", "submitting", "submitted", "failed", "unknown", "skipped"]
    assert [s.value for s in BatchStatus] == ["submitting", "submitted", "failed", "unknown", "retried"]
    assert [s for s in IssueStatus if s.went_out] == ["sending", "sent"]


def test_a_subscriber_who_leaves_before_their_batch_is_claimed_is_skipped(store):
    store.subscribers.merge(people(5))
    record(store)
    queue(store)
    store.subscribers.set_status("reader3@example.org", "unsubscribed")
    assert "Reader3@Example.org" not in drain(store)
    assert store.ledger.counts(KEY) == {"submitted": 4, "skipped": 1}


def test_a_claim_takes_exactly_its_variants_active_readers_among_others_queued_between_them(store):
    """Readers of two variants queued in turn, one of them gone: a claim takes the first
    variant's active readers and nothing else, though the others' deliveries lie between theirs."""
    store.subscribers.merge(NewSubscriber(f"r{i}@example.org", sections=("Europe",) if i % 2 else ()) for i in range(8))
    store.subscribers.set_status("r2@example.org", SubscriberStatus.UNSUBSCRIBED.value)
    record(store)
    store.ledger.enqueue(KEY, {(): "all", ("Europe",): "europe"})
    store.subscribers.set_status("r4@example.org", SubscriberStatus.UNSUBSCRIBED.value)  # leaves once queued

    first = store.ledger.claim(KEY, 100, "outbox")
    assert first is not None and first.variant == "all"
    assert [email for _, _, email, _ in first.recipients] == ["r0@example.org", "r6@example.org"]
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(deliveries.c.id, deliveries.c.variant, deliveries.c.status, deliveries.c.batch_id).order_by(
                deliveries.c.id
            )
        ).all()
    ids = [d for d, *_ in first.recipients]
    between = [r for r in rows if ids[0] < r.id < ids[-1] and r.id not in ids]
    assert {r.variant for r in between} == {"europe", "all"}  # the other variant's, and r4's
    assert {(r.variant, r.status, r.batch_id) for r in rows} == {
        ("all", "submitting", first.id),
        ("all", "skipped", None),
        ("europe", "pending", None),
    }
    second = store.ledger.claim(KEY, 100, "outbox")
    assert second is not None and second.variant == "europe"
    assert [email for _, _, email, _ in second.recipients] == [f"r{i}@example.org" for i in (1, 3, 5, 7)]
    assert store.ledger.claim(KEY, 100, "outbox") is None


def test_concurrent_claims_never_share_a_recipient(database_url):
    setup = Store.open(database_url)
    setup.subscribers.merge(people(400))
    record(setup)
    queue(setup)
    seen: list[list[str]] = [[], []]
    stores = [Store.open(database_url), Store.open(database_url)]
    start = threading.Barrier(2)

    def worker(i: int) -> None:
        start.wait()
        seen[i] = drain(stores[i], size=7, sending=0.01)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    together = seen[0] + seen[1]
    assert len(together) == len(set(together)) == 400
    assert seen[0] and seen[1], "both workers should have claimed batches"
    assert setup.ledger.counts(KEY) == {"submitted": 400}
    for s in (setup, *stores):
        s.close()


def test_a_batch_left_in_flight_by_a_dead_process_becomes_unknown(store):
    queued_and_claimed(store, readers=10, size=4)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with store.engine.begin() as conn:
        conn.execute(batches.update().values(claimed_by=f"{socket.gethostname()}:{int(dead.stdout)}"))
    assert store.ledger.reap_orphans(KEY, lease=timedelta(minutes=30)) == 1
    assert store.ledger.counts(KEY) == {"unknown": 4, "pending": 6}
    assert len(drain(store)) == 6  # the unknown four are never sent again on their own
    assert store.ledger.counts(KEY) == {"unknown": 4, "submitted": 6}


def orphaned(store: Store, size: int) -> list[int]:
    """Claim a batch of ``size`` and leave it as a killed process would: reaped as unknown."""
    claimed = store.ledger.claim(KEY, size, "outbox")
    assert claimed is not None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with store.engine.begin() as conn:
        conn.execute(
            batches.update()
            .where(batches.c.id == claimed.id)
            .values(claimed_by=f"{socket.gethostname()}:{int(dead.stdout)}")
        )
    assert store.ledger.reap_orphans(KEY, lease=timedelta(minutes=30)) == 1
    return [d for d, *_ in claimed.recipients]


def test_settling_unknown_deliveries_records_what_the_transport_proved(store):
    store.subscribers.merge(people(10))
    record(store)
    queue(store)
    ids = orphaned(store, 4)
    assert [o[0] for o in store.ledger.orphans(KEY, "outbox")] == ids
    assert store.ledger.orphans(KEY, "smtp") == []  # another transport has no evidence about them

    assert store.ledger.settle({ids[0]: "submitted", ids[1]: "unsent", ids[2]: "unsent"}) == (1, 2)
    assert store.ledger.counts(KEY) == {"submitted": 1, "unknown": 1, "pending": 8}
    assert store.ledger.settle({ids[0]: "unsent", ids[1]: "submitted"}) == (0, 0)  # only unknown rows change
    assert sorted(drain(store)) == sorted(f"Reader{i}@Example.org" for i in [1, 2, *range(4, 10)])
    assert store.ledger.counts(KEY) == {"submitted": 9, "unknown": 1}  # the unproven one stays unknown
    assert [p.email for p in store.ledger.problems(KEY)] == ["Reader3@Example.org"]


def test_resending_unknown_deliveries_queues_them_again(store):
    store.subscribers.merge(people(6))
    record(store)
    queue(store)
    orphaned(store, 3)
    drain(store)

    assert store.ledger.resend_unknown(KEY) == 3
    assert store.ledger.counts(KEY) == {"pending": 3, "submitted": 3}
    assert drain(store) == [f"Reader{i}@Example.org" for i in range(3)]
    with store.engine.connect() as conn:
        statuses = sorted(conn.execute(sa.select(batches.c.status)).scalars())
    assert statuses == ["retried", "submitted", "submitted"]
    assert store.ledger.resend_unknown(KEY) == 0


def test_a_live_claim_is_left_alone_and_a_remote_one_after_its_lease(store):
    store.subscribers.merge(people(4))
    record(store)
    queue(store)
    store.ledger.claim(KEY, 2, "outbox")
    assert store.ledger.reap_orphans(KEY, lease=timedelta(minutes=30)) == 0  # this process is alive
    with store.engine.begin() as conn:
        conn.execute(
            batches.update().values(claimed_by="elsewhere:1", claimed_at=datetime.now(UTC) - timedelta(hours=2))
        )
    assert store.ledger.reap_orphans(KEY, lease=timedelta(minutes=30)) == 1


def test_mixed_outcomes_and_retry_of_failed_batches(store):
    store.subscribers.merge(people(3))
    record(store)
    queue(store)
    claimed = store.ledger.claim(KEY, 3, "smtp")
    ids = [d for d, *_ in claimed.recipients]
    status = store.ledger.finish(
        claimed, {ids[0]: ("submitted", ""), ids[1]: ("failed", "550 no such user"), ids[2]: ("submitted", "")}
    )
    assert status == "failed"
    assert [(p.email, p.error) for p in store.ledger.problems(KEY)] == [("Reader1@Example.org", "550 no such user")]
    assert store.ledger.retry_failed(KEY) == 1
    assert drain(store) == ["Reader1@Example.org"]
    assert store.ledger.counts(KEY) == {"submitted": 3}


def test_retry_failed_includes_failed_recipients_of_a_batch_that_is_unknown(store):
    store.subscribers.merge(people(3))
    record(store)
    queue(store)
    claimed = store.ledger.claim(KEY, 3, "smtp")
    ids = [d for d, *_ in claimed.recipients]
    # SMTP: one lost after its data (unknown), then no way back: the rest were never sent.
    outcomes = {ids[0]: ("submitted", ""), ids[1]: ("unknown", "lost after the data"), ids[2]: ("failed", "not sent")}
    assert store.ledger.finish(claimed, outcomes) == "unknown"

    assert store.ledger.retry_failed(KEY) == 1
    assert drain(store) == ["Reader2@Example.org"]
    assert store.ledger.counts(KEY) == {"submitted": 2, "unknown": 1}


def test_release_gives_a_batch_back_untouched(store):
    store.subscribers.merge(people(3))
    record(store)
    queue(store)
    store.ledger.release(store.ledger.claim(KEY, 3, "sendgrid"))
    assert store.ledger.counts(KEY) == {"pending": 3}
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(batches)).scalar() == 0


def test_migrated_schema_matches_the_declared_tables(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


# What a claim or a finish changes in a delivery row (migration 0010).
CHANGED_BY_A_SEND = {"status", "batch_id", "error", "updated_at"}


def test_no_index_holds_what_claiming_or_finishing_a_batch_changes(store):
    """Not as a column, nor in a partial index's predicate: on PostgreSQL either one makes every
    claimed row a new row version with new entries in every index (migration 0010). Alembic's
    comparison above does not look at predicates, so the definitions are read back."""
    inspector = sa.inspect(store.engine)
    indexed = [set(index["column_names"]) for index in inspector.get_indexes("deliveries")]
    indexed += [set(unique["column_names"]) for unique in inspector.get_unique_constraints("deliveries")]
    assert {"issue_key", "variant", "id"} in indexed  # the claim's walk
    assert all(not columns & CHANGED_BY_A_SEND for columns in indexed), indexed
    if store.engine.dialect.name == "postgresql":
        query = "SELECT indexdef FROM pg_indexes WHERE tablename = 'deliveries' AND schemaname = current_schema()"
    else:
        query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries' AND sql IS NOT NULL"
    with store.engine.connect() as conn:
        definitions = conn.exec_driver_sql(query).scalars().all()
    assert any("ix_deliveries_queue" in d for d in definitions), definitions
    assert not [d for d in definitions if "WHERE" in d.upper()], definitions


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_claims_and_finishes_update_rows_in_place(store):
    """HOT updates: a claimed or finished row is rewritten on its own page, no index touched.
    Before migration 0010 no claim was (about half of a send's updates); on a page with no room
    left an update still moves, so a few may."""
    store.subscribers.merge(people(2000))
    record(store)
    queue(store)
    cursor = ClaimCursor()
    while (claimed := store.ledger.claim(KEY, 500, "sendgrid", cursor=cursor)) is not None:
        store.ledger.finish(claimed, {r[0]: ("submitted", "") for r in claimed.recipients})
    assert store.ledger.counts(KEY) == {"submitted": 2000}
    store.engine.dispose()  # a backend reports its statistics as it ends
    query = "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'deliveries'::regclass"
    deadline = time.monotonic() + 20
    while True:
        with store.engine.connect() as conn:
            updated, in_place = conn.exec_driver_sql(query).one()
        if updated >= 4000 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert updated == 4000
    assert in_place >= 0.95 * updated, (in_place, updated)


def test_a_claim_walks_the_claim_index_in_order_on_a_table_just_filled(store):
    """No statistics yet for the deliveries just queued: PostgreSQL's planner then chose to fetch
    and sort every pending delivery after the cursor's position (a second a claim at a million
    readers) rather than walk the index and stop at the batch's last row; SQLite, given a row
    value ``(variant, id) > (?, ?)``, walked the whole variant. A claim's search in a variant
    after a position, and its step to the next variant, are ranges of the index, in its order."""
    store.subscribers.merge(people(3000))
    record(store)
    queue(store)
    postgresql = store.engine.dialect.name == "postgresql"
    d = deliveries
    with store.engine.connect() as conn:
        variant, lowest = conn.execute(sa.select(sa.func.min(d.c.variant), sa.func.min(d.c.id))).one()
    middle = lowest + 1500
    in_variant = claim_query(KEY, 1000, locking=postgresql).where(d.c.variant == variant, d.c.id > middle)
    for query in (in_variant, next_variant(KEY, variant), next_variant(KEY, None)):
        plan = claim_plan(store, query)
        if postgresql:
            assert "Index" in plan and "ix_deliveries_queue on deliveries" in plan, plan
            assert "Sort" not in plan and "Bitmap" not in plan, plan
        else:
            assert "USING " in plan and "INDEX ix_deliveries_queue (issue_key=?" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
    plan = claim_plan(store, in_variant)
    if postgresql:
        assert f"AND (id > {middle}))" in plan.split("Filter")[0], plan
    else:
        assert "(issue_key=? AND variant=? AND id>?)" in plan, plan


def claim_plan(store: Store, query: sa.Select) -> str:
    """The plan the database chooses for a claim's search, in a claim's transaction."""
    sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.exec_driver_sql(IN_INDEX_ORDER)
            return "\n".join(conn.exec_driver_sql(f"EXPLAIN {sql}").scalars())
        return "\n".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))


def test_a_claim_searches_on_from_where_the_cursor_left_each_variant(store):
    """A cursor skips what its send claimed before, in each variant; ``restart`` looks again
    from the first variant (a range queued since may hold some of it); what was put back
    behind a position is found by a new cursor."""
    store.subscribers.merge(people(6))
    record(store)
    queue(store)
    with store.engine.connect() as conn:
        ids = sorted(conn.execute(sa.select(deliveries.c.id).where(deliveries.c.issue_key == KEY)).scalars())
    cursor = ClaimCursor()
    first = store.ledger.claim(KEY, 2, "sendgrid", cursor=cursor)
    second = store.ledger.claim(KEY, 2, "sendgrid", cursor=cursor)
    store.ledger.release(first)
    third = store.ledger.claim(KEY, 2, "sendgrid", cursor=cursor)
    assert [r[0] for r in first.recipients] == ids[0:2]
    assert [r[0] for r in second.recipients] == ids[2:4]
    assert [r[0] for r in third.recipients] == ids[4:6]  # not the two put back behind it
    assert cursor.positions == {third.variant: ids[5]}
    assert store.ledger.claim(KEY, 2, "sendgrid", cursor=cursor) is None
    cursor.restart()
    assert store.ledger.claim(KEY, 2, "sendgrid", cursor=cursor) is None
    again = store.ledger.claim(KEY, 2, "sendgrid", cursor=ClaimCursor())
    assert [r[0] for r in again.recipients] == ids[0:2]


def test_a_cursor_goes_back_for_a_variant_queued_behind_it(store):
    """A send's ranges are queued while it claims: a range may add readers of a variant the
    cursor has passed. After ``restart`` the next claim finds them, and none claimed twice."""
    store.subscribers.merge(
        NewSubscriber(f"reader{i}@example.org", f"Reader {i}", ("Asia-Pacific",) if i % 2 else ()) for i in range(4)
    )
    record(store)
    choices = store.ledger.choices_to_queue(KEY)
    variants = {choice: "-".join(choice) or "all" for choice in choices}  # "Asia-Pacific" < "all"
    low, high = store.ledger.id_ranges(2)
    store.ledger.enqueue(KEY, variants, ids=low)
    cursor = ClaimCursor()
    claims = []
    while (claimed := store.ledger.claim(KEY, 10, "sendgrid", cursor=cursor)) is not None:
        claims.append(claimed)
    assert [c.variant for c in claims] == ["Asia-Pacific", "all"]
    store.ledger.enqueue(KEY, variants, ids=high)
    cursor.restart()
    while (claimed := store.ledger.claim(KEY, 10, "sendgrid", cursor=cursor)) is not None:
        claims.append(claimed)
    assert [c.variant for c in claims] == ["Asia-Pacific", "all", "Asia-Pacific", "all"]
    assert sorted(email for c in claims for _, _, email, _ in c.recipients) == sorted(
        f"reader{i}@example.org" for i in range(4)
    )


STATUS_CHECKS = [  # (table, column, a word its check allows)
    ("subscribers", "status", "bounced"),
    ("issues", "status", "approved"),
    ("batches", "status", "retried"),
    ("deliveries", "status", "skipped"),
    ("issue_edits", "action", "move"),
]


def test_every_status_check_takes_its_words_and_refuses_any_other(store):
    """After 0008 (word-by-word checks on SQLite) each check still refuses what it always did."""
    queued_and_claimed(store, readers=1, size=1)
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(metadata.tables["issue_edits"]).values(
                issue_key=KEY, url="https://x", action="pin", created_at=NOW
            )
        )
    for table, column, allowed in STATUS_CHECKS:
        with store.engine.begin() as conn:
            assert conn.exec_driver_sql(f"UPDATE {table} SET {column} = '{allowed}'").rowcount == 1
        for refused in ("Skipped", "bogus", ""):
            with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
                conn.exec_driver_sql(f"UPDATE {table} SET {column} = '{refused}'")


def test_sqlite_checks_build_no_table_for_each_row_written(tmp_path):
    """An IN list in a SQLite CHECK is built into a temporary table for every row (0008's
    docstring): writing a status, as every claim and finish does, must not open one. (A SQLite
    query plan: PostgreSQL plans IN as one comparison with an array.)"""
    store = Store.open(f"sqlite:///{tmp_path / 'digest.sqlite3'}")
    with store.engine.connect() as conn:
        definitions = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all())
        for table, column, allowed in STATUS_CHECKS:
            assert f"{column} IN (" not in definitions[table]
            assert f"{column} = '{allowed}'" in definitions[table]
            plan = [row[1] for row in conn.exec_driver_sql(f"EXPLAIN UPDATE {table} SET {column} = '{allowed}'")]
            assert "OpenEphemeral" not in plan, table
    store.close()


def test_the_word_by_word_checks_go_back_to_in_lists_and_forth(database_url):
    store = Store.open(database_url)
    store.subscribers.merge(people(2))
    downgrade(store, "0007")
    sqlite = store.engine.dialect.name == "sqlite"
    if sqlite:
        with store.engine.connect() as conn:
            sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'deliveries'").scalar_one()
        assert "CHECK (status IN ('pending', 'submitting', 'submitted', 'failed', 'unknown', 'skipped'))" in sql
    store.close()
    again = Store.open(database_url)
    assert version_of(again) == [HEAD]
    assert again.subscribers.counts() == {"active": 2}
    with pytest.raises(sa.exc.IntegrityError), again.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE subscribers SET status = 'bogus'")
    if sqlite:
        with again.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    again.close()


def delivery_keys(store: Store) -> list[tuple[list[str], str]]:
    """The foreign keys of the deliveries table: (its columns, the table they refer to)."""
    keys = sa.inspect(store.engine).get_foreign_keys("deliveries")
    return sorted((key["constrained_columns"], key["referred_table"]) for key in keys)


def test_deliveries_have_no_foreign_keys_whose_checks_run_for_every_row(store):
    """0009: each key's check was a query per delivery queued, claimed or finished."""
    assert delivery_keys(store) == []


def test_forgetting_a_subscriber_deletes_their_deliveries_and_nobody_elses(store):
    queued_and_claimed(store, readers=3, size=1)
    assert store.subscribers.forget("reader1@example.org")
    assert not store.subscribers.forget("reader1@example.org")
    with store.engine.connect() as conn:
        left = conn.execute(sa.select(deliveries.c.subscriber_id).order_by(deliveries.c.subscriber_id)).scalars()
        ids = conn.execute(sa.select(subscribers.c.id).order_by(subscribers.c.id)).scalars().all()
        assert list(left) == ids and len(ids) == 2


def test_a_delivery_left_by_someone_forgotten_while_queueing_is_skipped(store):
    # Forgotten between the queueing statement's read and its write: their delivery has no
    # subscriber. The claim skips it like anyone who left, and sends everyone else once.
    store.subscribers.merge(people(3))
    record(store)
    queue(store)
    with store.engine.begin() as conn:  # the subscriber's row gone, as if after the queueing read it
        gone = conn.execute(sa.select(subscribers.c.id).where(subscribers.c.email_key == "reader0@example.org"))
        conn.execute(subscribers.delete().where(subscribers.c.id == gone.scalar_one()))
    assert sorted(drain(store)) == ["Reader1@Example.org", "Reader2@Example.org"]
    assert store.ledger.counts(KEY) == {"submitted": 2, "skipped": 1}


def test_nothing_is_queued_for_an_issue_that_is_not_recorded(store):
    store.subscribers.merge(people(2))
    record(store)
    assert store.ledger.enqueue("2099-W01", {(): "all"}) == 0
    assert store.ledger.enqueue("2099-W01", {(): "all"}, ids=(1, 10**6), waiting=["[]"]) == 0
    someone = store.subscribers.by_email("reader0@example.org")
    assert someone is not None
    assert store.ledger.claim_one("2099-W01", someone.id, "all", "outbox") is None
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one() == 0


def test_a_batch_put_back_leaves_no_delivery_naming_it(store):
    # What the key's ON DELETE SET NULL did, putting a batch back does: no delivery is left in a
    # batch that is gone, and one no longer in flight keeps its status.
    claimed = queued_and_claimed(store, readers=3, size=3)
    gone = claimed.recipients[0][0]
    with store.engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == gone).values(status="skipped", error="unsubscribed"))
    store.ledger.release(claimed)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(deliveries.c.status, deliveries.c.batch_id).order_by(deliveries.c.id)).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(batches)).scalar_one() == 0
    assert [tuple(row) for row in rows] == [("skipped", None), ("pending", None), ("pending", None)]
    assert sorted(drain(store)) == sorted(email for _, _, email, _ in claimed.recipients[1:])


def test_the_keys_come_back_on_downgrade_and_go_again(database_url):
    store = Store.open(database_url)
    claimed = queued_and_claimed(store, readers=2, size=1)
    downgrade(store, "0008")
    assert delivery_keys(store) == [
        (["batch_id"], "batches"),
        (["issue_key"], "issues"),
        (["subscriber_id"], "subscribers"),
    ]
    with store.engine.begin() as conn:  # the keys' own actions, as 0001 made them
        conn.execute(batches.delete().where(batches.c.id == claimed.id))
        assert (
            conn.execute(sa.select(deliveries.c.batch_id).where(deliveries.c.id == claimed.recipients[0][0])).scalar()
            is None
        )
    store.close()
    again = Store.open(database_url)
    assert version_of(again) == [HEAD]
    assert delivery_keys(again) == []
    assert again.ledger.counts(KEY) == {"submitting": 1, "pending": 1}
    if again.engine.dialect.name == "sqlite":
        with again.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    again.close()


def test_0010_moves_the_claim_index_and_a_send_goes_on_across_it(database_url):
    """A store at 0009 with a batch in flight and readers pending: downgraded, then opened again.
    The claim index, the batch index and the page fill go back and come again, and the send
    finishes the batch and claims the rest on the new index."""
    store = Store.open(database_url)
    claimed = queued_and_claimed(store, readers=3, size=1)
    downgrade(store, "0009")
    assert delivery_indexes(store) == {"ix_deliveries_batch", "ix_deliveries_pending"}
    postgresql = store.engine.dialect.name == "postgresql"
    assert fillfactor(store) == ("70" if postgresql else None)
    store.close()
    again = Store.open(database_url)
    assert version_of(again) == [HEAD]
    assert delivery_indexes(again) == {"ix_deliveries_queue"}
    assert fillfactor(again) == ("45" if postgresql else None)
    again.ledger.finish(claimed, {claimed.recipients[0][0]: ("submitted", "")})
    cursor = ClaimCursor()
    cursor.moved(claimed)
    rest = again.ledger.claim(KEY, 5, "sendgrid", cursor=cursor)
    assert rest is not None and len(rest.recipients) == 2
    assert again.ledger.counts(KEY) == {"submitted": 1, "submitting": 2}
    again.close()


def delivery_indexes(store: Store) -> set[str]:
    """The names of the deliveries table's indexes (not its unique constraint's)."""
    return {index["name"] for index in sa.inspect(store.engine).get_indexes("deliveries")} - {
        "uq_deliveries_issue_subscriber"
    }


def fillfactor(store: Store) -> str | None:
    """How full PostgreSQL fills the deliveries table's new pages (None on SQLite, which has no
    such setting)."""
    if store.engine.dialect.name != "postgresql":
        return None
    with store.engine.connect() as conn:
        options = conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE oid = 'deliveries'::regclass").scalar()
    return dict(option.split("=") for option in options or []).get("fillfactor")


def test_opening_again_upgrades_in_place_and_keeps_the_data(database_url):
    first = Store.open(database_url)
    first.subscribers.merge(people(3))
    record(first)
    first.close()
    again = Store.open(database_url)
    assert again.subscribers.counts() == {"active": 3}
    assert again.issues.exists(KEY)
    with again.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == HEAD
    again.close()


def downgrade(store: Store, revision: str) -> None:
    """Take the store's database down to ``revision`` with Alembic, as an operator would."""
    from importlib import resources

    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("digest.store") / "migrations"))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def version_of(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())


def test_head_names_alembics_newest_revision():
    # A new migration must bump HEAD, or a database at the old head would never be upgraded.
    from importlib import resources

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("digest.store") / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_heads() == [HEAD]


def test_opening_a_database_already_at_head_does_not_load_alembic(database_url):
    # Every `digest build` opens the store: at head, that is one query, not Alembic's import and run.
    Store.open(database_url).close()
    script = (
        "import sys; from digest.store import Store; Store.open(sys.argv[1]).close(); print('alembic' in sys.modules)"
    )
    opened = subprocess.run([sys.executable, "-c", script, database_url], capture_output=True, text=True, check=True)
    assert opened.stdout.strip() == "False"


def test_a_database_at_an_older_revision_is_still_upgraded(database_url):
    from digest.store.engine import make_engine, upgrade

    engine = make_engine(database_url)
    upgrade(engine, "0004")
    engine.dispose()
    store = Store.open(database_url)
    assert version_of(store) == [HEAD]
    store.close()


def test_pending_deliveries_from_before_0007_are_still_sent(database_url):
    # Before 0007 a retried delivery kept its old error while pending; the claim now takes only
    # pending rows without one, so the upgrade clears it: nobody queued then is left behind.
    store = Store.open(database_url)
    store.subscribers.merge(people(3))
    record(store)
    queue(store)
    downgrade(store, "0006")
    with store.engine.begin() as conn:
        conn.execute(deliveries.update().values(error="failed: mailbox full (an earlier attempt)"))
    store.close()

    again = Store.open(database_url)
    assert version_of(again) == [HEAD]
    assert sorted(drain(again)) == [f"Reader{i}@Example.org" for i in range(3)]
    assert again.ledger.counts(KEY) == {"submitted": 3}
    again.close()


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path):
    s = Store.open(f"sqlite:///{tmp_path / 'd' / 'x.sqlite3'}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    s.close()
    assert os.path.exists(tmp_path / "d" / "x.sqlite3")


def test_an_unreachable_database_is_one_clear_error():
    from digest.errors import StoreError

    with pytest.raises(
        StoreError, match=r"cannot open the database postgresql\+psycopg://nobody:\*\*\*@127\.0\.0\.1:1/"
    ):
        Store.open("postgresql+psycopg://nobody:secret@127.0.0.1:1/none?connect_timeout=2")


def test_upgrading_a_database_from_the_first_revision_keeps_its_data(database_url):
    from digest.store import make_engine

    old = Store(make_engine(database_url))
    old.upgrade("0001")
    with old.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO subscribers (email, email_key, name, status, sections, created_at, updated_at) "
            "VALUES ('a@example.org', 'a@example.org', 'A', 'unsubscribed', '[]', '2026-11-01', '2026-11-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO issues (key, subject, window_start, window_end, article_count, summary, created_at) "
            "VALUES ('2026-W47', 'S', '2026-11-13', '2026-11-20', 4, '{}', '2026-11-20')"
        )
    old.close()
    new = Store.open(database_url)
    assert [(s.email, s.status) for s in new.subscribers.every()] == [("a@example.org", "unsubscribed")]
    with new.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT status FROM issues WHERE key = '2026-W47'").scalar() == "sending"
    new.close()


def test_a_batch_claimed_ahead_by_a_dead_process_goes_back_to_pending_not_unknown(store):
    store.subscribers.merge(people(10))
    record(store)
    queue(store)
    ahead = store.ledger.claim(KEY, 4, "outbox", handed_over=False)
    assert ahead is not None
    assert store.ledger.reap_orphans(KEY, lease=timedelta(minutes=30)) == 0  # this process is alive
    assert store.ledger.counts(KEY) == {"submitting": 4, "pending": 6}
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with store.engine.begin() as conn:
        conn.execute(batches.update().values(claimed_by=f"{socket.gethostname()}:{int(dead.stdout)}"))
    assert store.ledger.reap_orphans(KEY, lease=timedelta(minutes=30)) == 0  # none made unknown
    assert store.ledger.counts(KEY) == {"pending": 10}  # nothing of it went out
    assert not store.ledger.hand_over(ahead)  # taken back: it must not go out any more
    assert sorted(drain(store)) == sorted(f"Reader{i}@Example.org" for i in range(10))


def test_handing_over_starts_the_lease_and_then_a_dead_claim_is_unknown(store):
    store.subscribers.merge(people(4))
    record(store)
    queue(store)
    ahead = store.ledger.claim(KEY, 2, "outbox", handed_over=False)
    assert ahead is not None
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    with store.engine.begin() as conn:
        conn.execute(batches.update().values(claimed_at=long_ago))
    assert store.ledger.hand_over(ahead)
    assert not store.ledger.hand_over(ahead)  # once only
    with store.engine.begin() as conn:
        conn.execute(batches.update().values(claimed_by="elsewhere:1"))
    assert store.ledger.reap_orphans(KEY, lease=timedelta(minutes=30)) == 0  # within the lease from hand-over
    with store.engine.begin() as conn:
        conn.execute(batches.update().values(claimed_at=long_ago))
    assert store.ledger.reap_orphans(KEY, lease=timedelta(minutes=30)) == 1
    assert store.ledger.counts(KEY) == {"unknown": 2, "pending": 2}


def test_a_finish_hands_over_the_batch_after_it_in_the_same_transaction(store):
    store.subscribers.merge(people(6))
    record(store)
    queue(store)
    first = store.ledger.claim(KEY, 2, "outbox")
    second = store.ledger.claim(KEY, 2, "outbox", handed_over=False)
    third = store.ledger.claim(KEY, 2, "outbox", handed_over=False)
    assert first is not None and second is not None and third is not None
    done = {d: ("submitted", "") for d, *_ in first.recipients}
    assert store.ledger.finish_and_hand_over(first, done, "", second) == ("submitted", True)
    # The process dies: the batch handed over may have gone out (unknown); the one only
    # claimed ahead did not (pending again); the finished one stays finished.
    with store.engine.begin() as conn:
        conn.execute(
            batches.update().values(claimed_by="elsewhere:1", claimed_at=datetime.now(UTC) - timedelta(hours=2))
        )
    assert store.ledger.reap_orphans(KEY, lease=timedelta(minutes=30)) == 1
    assert store.ledger.counts(KEY) == {"submitted": 2, "unknown": 2, "pending": 2}
    # A batch taken back meanwhile is not handed over by a finish either.
    fourth = store.ledger.claim(KEY, 2, "outbox")
    fifth = store.ledger.claim(KEY, 2, "outbox", handed_over=False)
    assert fourth is not None and fifth is None  # nothing left to claim ahead
    assert not store.ledger.finish_and_hand_over(
        fourth, {d: ("submitted", "") for d, *_ in fourth.recipients}, "", third
    )[1]
    assert store.ledger.counts(KEY) == {"submitted": 4, "unknown": 2}


def test_workers_queueing_one_issue_at_once_queue_each_subscriber_once_and_say_so(database_url):
    setup = Store.open(database_url)
    setup.subscribers.merge(people(3000))
    record(setup)
    stores = [Store.open(database_url) for _ in range(4)]
    queued = [0] * len(stores)
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def worker(i: int) -> None:
        start.wait()
        try:
            queued[i] = queue(stores[i])
        except BaseException as exc:  # reported below: a worker must not fail
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(queued) == 3000  # each worker reports only the deliveries it queued
    assert setup.ledger.counts(KEY) == {"pending": 3000}
    for s in (setup, *stores):
        s.close()
