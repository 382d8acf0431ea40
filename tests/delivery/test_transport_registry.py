"""Transports by name: the registry, the config's tables, and an unknown name refused up front."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import Delivery
from digest.delivery.transports import TRANSPORTS, open_transport
from digest.delivery.transports.outbox import OutboxTransport
from digest.delivery.transports.sendgrid import SendGridTransport
from digest.delivery.transports.smtp import SmtpTransport
from digest.errors import ConfigError
from factories import copy_sample
from factories import settings as make_settings

SECRET = "a-test-secret-of-well-over-32-bytes-for-signing"


def test_each_config_table_has_its_transport_carrying_that_tables_model():
    assert dict(TRANSPORTS) == {"outbox": OutboxTransport, "smtp": SmtpTransport, "sendgrid": SendGridTransport}
    tables = Delivery.transport_tables()
    assert sorted(tables) == sorted(TRANSPORTS)
    for name, cls in TRANSPORTS.items():
        assert cls.name == name
        assert cls.settings_model is tables[name]


@pytest.mark.parametrize("name", ["outbox", "smtp", "sendgrid"])
def test_each_registered_transport_opens_from_its_settings(tmp_path, monkeypatch, name):
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test")
    monkeypatch.delenv("DIGEST_SMTP_PASSWORD", raising=False)
    transport = open_transport(make_settings(tmp_path, delivery={"transport": name}))
    try:
        assert isinstance(transport, TRANSPORTS[name])
    finally:
        transport.close()


def test_a_name_without_a_registered_transport_is_refused_not_sent_through_the_outbox(tmp_path):
    # Settings that passed no validation (model_copy does none) name a transport nobody registered:
    # the outbox must not quietly stand in for it.
    valid = make_settings(tmp_path)
    stray = valid.model_copy(update={"delivery": valid.delivery.model_copy(update={"transport": "memory"})})

    with pytest.raises(ConfigError) as info:
        open_transport(stray)

    assert str(info.value).startswith(
        "[delivery] transport: 'memory' is not a known transport (known: outbox, smtp, sendgrid)"
    )
    assert info.value.exit_code == 2
    assert not (tmp_path / "state" / "outbox").exists()


def test_an_unknown_transport_in_the_file_is_one_line_naming_the_known_ones_and_nothing_is_sent(tmp_path):
    config_path = copy_sample(tmp_path)
    text = config_path.read_text(encoding="utf-8")
    assert "[delivery]" not in text  # the bundled config keeps the defaults
    config_path.write_text(text + '\n[delivery]\ntransport = "smpt"\n', encoding="utf-8")

    result = CliRunner(env={"DIGEST_SECRET": SECRET, "DIGEST_DATABASE_URL": ""}).invoke(
        cli, ["send", "--config", str(config_path), "--now", "2026-11-27T09:00"]
    )

    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"digest: error: {config_path}: [delivery] transport: must be one of the known transports: "
        "outbox, smtp, sendgrid (got 'smpt'); fix that key and run again\n"
    )
    assert not (tmp_path / ".digest").exists()
