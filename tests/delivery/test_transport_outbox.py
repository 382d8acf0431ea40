"""The outbox transport: one .eml per recipient, written atomically, parsed back as a client would."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import hostile
from digest import files
from digest.config import Settings
from digest.delivery.transports import base, open_transport
from digest.delivery.transports.base import Batch, Orphan, Recipient, Settles, TemporaryError
from digest.delivery.transports.outbox import OutboxTransport
from digest.issue.message import build_message
from digest.issue.render import Rendered
from factories import VARIANT, batch, read_eml, recipient, sending


def make_settings(tmp_path: Path, **outbox: Any) -> Settings:
    return sending(tmp_path, "outbox", outbox)


def test_one_eml_per_recipient_with_its_own_values(tmp_path):
    settings = make_settings(tmp_path)
    transport = open_transport(settings)
    assert isinstance(transport, OutboxTransport)

    result = transport.send(batch(1, 2))

    folder = settings.data_dir / "outbox" / "2026-W48"
    assert result.outcomes == {101: ("submitted", ""), 102: ("submitted", "")}
    assert result.provider_id == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["00000101-1.eml", "00000102-2.eml"]
    for i in (1, 2):
        msg = read_eml(folder / f"{100 + i:08d}-{i}.eml")
        assert msg["To"] == f'"Reader <{i}>" <r{i}@example.net>'
        assert msg["Subject"] == VARIANT.subject
        assert msg["List-Unsubscribe"] == f"<https://example.org/unsubscribe?t=tok{i}&x=1>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text, html = msg.iter_parts()
        assert text.get_content().strip() == f"Reader <{i}> https://example.org/unsubscribe?t=tok{i}&x=1"
        assert html.get_content().strip() == (
            f'<p>Reader &lt;{i}&gt; <a href="https://example.org/unsubscribe?t=tok{i}&amp;x=1">u</a></p>'
        )


def test_a_test_copy_goes_to_its_own_folder_marked_test(tmp_path):
    out = tmp_path / "out"
    transport = OutboxTransport(make_settings(tmp_path), out)

    transport.send(batch(1, test=True))

    assert [p.relative_to(out).as_posix() for p in out.rglob("*")] == [
        "test-2026-W48",
        "test-2026-W48/r1@example.net.eml",
    ]
    assert read_eml(out / "test-2026-W48" / "r1@example.net.eml")["Subject"] == f"[TEST] {VARIANT.subject}"


def test_a_second_run_rewrites_the_file_and_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "out"
    transport = OutboxTransport(make_settings(tmp_path), out)
    transport.send(batch(1))
    first = (out / "2026-W48" / "00000101-1.eml").read_bytes()

    transport.send(batch(1))  # after a crash, say: the same delivery is rewritten, not duplicated

    files_now = list((out / "2026-W48").iterdir())
    assert [p.name for p in files_now] == ["00000101-1.eml"]  # no temporary file left beside it
    assert files_now[0].read_bytes() != first  # a new Message-ID and Date: really written again


def test_a_failed_write_keeps_the_old_file_whole(tmp_path, monkeypatch):
    out = tmp_path / "out"
    transport = OutboxTransport(make_settings(tmp_path), out)
    transport.send(batch(1))
    path = out / "2026-W48" / "00000101-1.eml"
    before = path.read_bytes()

    def disk_full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", disk_full)
    with pytest.raises(TemporaryError, match="cannot write: No space left on device") as caught:
        transport.send(batch(1))

    assert isinstance(caught.value.__cause__, OSError)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_an_outbox_that_cannot_be_a_folder_is_a_temporary_error(tmp_path):
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the folder should be")
    transport = OutboxTransport(make_settings(tmp_path), blocker)

    with pytest.raises(TemporaryError, match=f"outbox {blocker / '2026-W48'}: cannot write") as caught:
        transport.send(batch(1))
    assert isinstance(caught.value.__cause__, OSError)


# --- hostile values and per-recipient errors ---------------------------------------------------------


@pytest.mark.parametrize("lead", hostile.SUBJECTS)
def test_a_hostile_title_and_name_add_no_header_to_the_eml(tmp_path, lead):
    evil = Recipient(
        101, 1, "eve@example.net", {**recipient(1).values, "name": hostile.NAME, "unsubscribe_url": hostile.URL}
    )
    out = tmp_path / "out"
    transport = OutboxTransport(make_settings(tmp_path), out)

    result = transport.send(Batch("2026-W48", hostile.variant(tmp_path, lead), (evil, recipient(2)), batch_id=1))

    assert result.outcomes == {101: ("submitted", ""), 102: ("submitted", "")}
    for path in sorted((out / "2026-W48").iterdir()):
        raw = path.read_bytes()
        assert hostile.header_names(raw) == hostile.expected()
        assert hostile.parsed(raw)["Subject"] == hostile.SUBJECTS[lead]
    msg = hostile.parsed((out / "2026-W48" / "00000101-1.eml").read_bytes())
    assert msg["To"] == f'"{hostile.NAME_SHOWN}" <eve@example.net>'
    assert msg["List-Unsubscribe"] == f"<{hostile.URL_SHOWN}>"


def test_a_recipient_whose_message_cannot_be_built_fails_alone(tmp_path, monkeypatch):
    def build(settings: Settings, variant: Rendered, values: Any, **kwargs: Any) -> EmailMessage:
        if kwargs["to"] == "r2@example.net":
            raise ValueError("invalid arguments; address parts cannot contain CR or LF")
        return build_message(settings, variant, values, **kwargs)

    monkeypatch.setattr(base, "build_message", build)
    out = tmp_path / "out"

    result = OutboxTransport(make_settings(tmp_path), out).send(batch(1, 2, 3))

    assert result.outcomes == {
        101: ("submitted", ""),
        102: ("failed", "message not built: invalid arguments; address parts cannot contain CR or LF"),
        103: ("submitted", ""),
    }
    assert sorted(p.name for p in (out / "2026-W48").iterdir()) == ["00000101-1.eml", "00000103-3.eml"]


def orphan(i: int) -> Orphan:
    r = recipient(i)
    return Orphan(r.delivery_id, r.subscriber_id, r.email, "2026-W48", batch_id=1)


def test_settle_finds_which_orphans_were_written_and_removes_their_half_written_files(tmp_path):
    out = tmp_path / "out"
    transport = OutboxTransport(make_settings(tmp_path), out)
    transport.send(batch(1, 2))  # then the process was killed while writing r3's file
    folder = out / "2026-W48"
    (folder / ".00000103-3.eml.k1ll3d_x.tmp").write_bytes(b"From: half a mess")
    (folder / ".00000101-1.eml.rewrite1.tmp").write_bytes(b"From: half a rewrite")
    (folder / ".00000109-9.eml.writing9.tmp").write_bytes(b"From: another sender, still writing")

    assert isinstance(transport, Settles)
    resolved = transport.settle([orphan(1), orphan(2), orphan(3), orphan(4)])

    assert resolved == {101: "submitted", 102: "submitted", 103: "unsent", 104: "unsent"}
    # Only the orphans' leftovers go: r9 is no orphan, so its writer may be alive.
    assert sorted(p.name for p in folder.iterdir()) == [
        ".00000109-9.eml.writing9.tmp",
        "00000101-1.eml",
        "00000102-2.eml",
    ]


def test_settle_before_any_file_was_written_says_unsent(tmp_path):
    transport = OutboxTransport(make_settings(tmp_path), tmp_path / "out")
    assert transport.settle([orphan(1)]) == {101: "unsent"}
