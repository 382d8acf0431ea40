"""The SendGrid stand-in behaves like the real Mail Send service, driven by the official package.

Every request here goes through ``sendgrid.SendGridAPIClient`` (or plain urllib where the package
cannot produce the request, e.g. a wrong Content-Type), the way the SendGrid transport will.
"""

from __future__ import annotations

import copy
import gzip
import http.client
import json
import math
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from python_http_client.exceptions import (
    BadRequestsError,
    ForbiddenError,
    HTTPError,
    InternalServerError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Category,
    Cc,
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    Personalization,
    ReplyTo,
    Substitution,
    To,
)

from sendgrid_standin import (
    AUTH_ERROR_MESSAGE,
    MAX_BODY_BYTES,
    SendGridStandIn,
    _compile,
    _personalization_matches_schema,
)

TIMEOUT = 10.0


@pytest.fixture
def client(sg: SendGridStandIn) -> SendGridAPIClient:
    api = SendGridAPIClient(api_key="SG.test", host=sg.url)
    api.client.timeout = TIMEOUT
    return api


def personalization(index: int, *, cc: int = 0) -> Personalization:
    p = Personalization()
    p.add_to(To(f"user{index}@example.com", f"User {index}"))
    for extra in range(cc):
        p.add_cc(Cc(f"cc{index}.{extra}@example.com"))
    p.add_substitution(Substitution("-name-", f"User {index}"))
    p.add_substitution(Substitution("-unsubscribe-", f"https://example.org/u/{index}"))
    p.add_substitution(Substitution("-id-", str(index)))
    p.add_header(Header("List-Unsubscribe", f"<https://example.org/u/{index}>"))
    p.add_header(Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    p.add_custom_arg(CustomArg("issue", "42"))
    p.add_custom_arg(CustomArg("subscriber", str(index)))
    return p


def newsletter(count: int = 3, *, start: int = 0, cc: int = 0) -> Mail:
    """A digest as the transport will build it: one personalization per subscriber, in order."""
    mail = Mail()
    mail.from_email = From("digest@example.org", "The Digest")
    mail.subject = "This week, -name-"
    mail.reply_to = ReplyTo("editor@example.org", "Editor")
    mail.add_content(Content("text/html", "<p>Hello -name-</p>"))
    mail.add_content(Content("text/plain", "Hello -name-"))  # the package puts text/plain first
    mail.add_category(Category("digest"))
    for index in range(start, start + count):
        # add_personalization inserts at index 0 unless told otherwise
        mail.add_personalization(personalization(index, cc=cc), index=index - start)
    return mail


def body(count: int = 2) -> dict[str, Any]:
    return newsletter(count).get()


def errors_of(exc: HTTPError) -> list[dict[str, Any]]:
    return exc.to_dict["errors"]


# --- accepted -------------------------------------------------------------------------------------


def test_valid_request_is_accepted_and_recorded(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    response = client.send(newsletter(3))

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert message_id
    [record] = sg.accepted
    assert record.message_id == message_id
    assert record.personalizations == 3
    assert record.headers["authorization"] == "Bearer SG.test"
    assert record.headers["content-type"] == "application/json"
    sent = record.body
    assert sent is not None
    assert [c["type"] for c in sent["content"]] == ["text/plain", "text/html"]
    assert sent["categories"] == ["digest"]
    assert sent["reply_to"] == {"email": "editor@example.org", "name": "Editor"}
    first = sent["personalizations"][0]
    assert first["headers"]["List-Unsubscribe"] == "<https://example.org/u/0>"
    assert first["substitutions"]["-id-"] == "0"
    assert first["custom_args"] == {"issue": "42", "subscriber": "0"}
    assert sg.recipients() == ["user0@example.com", "user1@example.com", "user2@example.com"]
    assert sg.rejected == []
    assert sg.requests == 1


def test_each_request_gets_its_own_message_id(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    ids = {client.send(newsletter(1, start=n)).headers["X-Message-Id"] for n in range(3)}
    assert len(ids) == 3
    assert sg.recipients() == ["user0@example.com", "user1@example.com", "user2@example.com"]


def test_sandbox_mode_answers_200_and_delivers_nothing(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    message = body()
    message["mail_settings"] = {"sandbox_mode": {"enable": True}}
    assert client.send(message).status_code == 200
    assert sg.accepted == [] and sg.recipients() == []
    assert len(sg.sandboxed) == 1


def test_gzip_body_is_accepted(sg: SendGridStandIn) -> None:
    request = urllib.request.Request(
        sg.url + "/v3/mail/send",
        data=gzip.compress(json.dumps(body(2)).encode()),
        headers={"Authorization": "Bearer SG.x", "Content-Type": "application/json", "Content-Encoding": "gzip"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        assert response.status == 202
    assert len(sg.recipients()) == 2


def test_concurrent_clients_are_all_recorded(sg: SendGridStandIn) -> None:
    def send(start: int) -> None:
        api = SendGridAPIClient(api_key="SG.test", host=sg.url)
        api.client.timeout = TIMEOUT
        for batch in range(3):
            api.send(newsletter(20, start=start + batch * 20))

    threads = [threading.Thread(target=send, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recipients = sg.recipients()
    assert len(recipients) == len(set(recipients)) == 4 * 3 * 20
    assert sg.stats()["accepted"] == 12


# --- the limits of the real service ---------------------------------------------------------------


def test_1000_personalizations_pass_1001_are_refused(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    assert client.send(newsletter(1000)).status_code == 202

    with pytest.raises(BadRequestsError) as caught:
        client.send(newsletter(1001, start=1000))
    [error] = errors_of(caught.value)
    assert error["field"] == "personalizations"
    assert "limited to 1000 personalizations" in error["message"] and "1001" in error["message"]
    assert error["help"] is None
    assert len(sg.recipients()) == 1000


def test_at_most_1000_recipients_counting_cc(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    assert client.send(newsletter(500, cc=1)).status_code == 202  # 500 to + 500 cc

    over = newsletter(500, start=1000, cc=1)
    over.personalizations[0].add_cc(Cc("one.more@example.com"))
    with pytest.raises(BadRequestsError) as caught:
        client.send(over)
    [error] = errors_of(caught.value)
    assert error["field"] == "personalizations"
    assert "1000 total recipients" in error["message"] and "1001" in error["message"]


def test_an_address_at_most_once_per_request(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    mail = newsletter(2)
    mail.personalizations[1].add_cc(Cc("USER0@example.com"))  # case-insensitive
    with pytest.raises(BadRequestsError) as caught:
        client.send(mail)
    [error] = errors_of(caught.value)
    assert error["field"] == "personalizations.1"
    assert "USER0@example.com" in error["message"] and "personalizations.1.cc" in error["message"]

    # the package's helpers drop duplicates inside one personalization; a raw body does not
    raw = body(1)
    raw["personalizations"][0]["bcc"] = [{"email": "user0@example.com"}]
    with pytest.raises(BadRequestsError):
        client.send(raw)
    assert sg.accepted == []


@pytest.mark.parametrize(
    ("where", "name"),
    [("personalization", "Reply-To"), ("personalization", "subject"), ("top", "x-sg-id"), ("top", "DKIM-Signature")],
)
def test_reserved_headers_are_refused(client: SendGridAPIClient, where: str, name: str) -> None:
    raw = body(2)
    if where == "top":
        raw["headers"] = {name: "x"}
        field = "headers"
    else:
        raw["personalizations"][1]["headers"][name] = "x"
        field = "personalizations.1.headers"
    with pytest.raises(BadRequestsError) as caught:
        client.send(raw)
    [error] = errors_of(caught.value)
    assert error["field"] == field
    assert name in error["message"]


def test_substitutions_and_dynamic_template_data_do_not_mix(client: SendGridAPIClient) -> None:
    mail = newsletter(1)
    mail.template_id = "d-0123456789abcdef"
    mail.personalizations[0].dynamic_template_data = {"name": "User 0"}  # and it has substitutions
    with pytest.raises(BadRequestsError) as caught:
        client.send(mail)
    assert [e["field"] for e in errors_of(caught.value)] == ["personalizations.0.substitutions"]

    legacy = body(1)
    legacy["personalizations"][0]["dynamic_template_data"] = {"name": "x"}  # without a d- template
    with pytest.raises(BadRequestsError) as caught:
        client.send(legacy)
    assert [e["field"] for e in errors_of(caught.value)] == ["personalizations.0.dynamic_template_data"]


def _big_substitutions(raw: dict[str, Any]) -> None:
    raw["personalizations"][0]["substitutions"] = {"-a-": "x" * 5000, "-b-": "y" * 5000}


def _big_custom_args(raw: dict[str, Any]) -> None:
    raw["custom_args"] = {"campaign": "c" * 6000}
    raw["personalizations"][1]["custom_args"] = {"subscriber": "s" * 4000}


def _eleven_categories(raw: dict[str, Any]) -> None:
    raw["categories"] = [f"c{n}" for n in range(11)]


def _long_category(raw: dict[str, Any]) -> None:
    raw["categories"] = ["c" * 256]


def _html_first(raw: dict[str, Any]) -> None:
    raw["content"].reverse()


def _two_plain(raw: dict[str, Any]) -> None:
    raw["content"].append({"type": "text/plain", "value": "again"})


def _empty_to(raw: dict[str, Any]) -> None:
    raw["personalizations"][1]["to"] = []


def _no_subject(raw: dict[str, Any]) -> None:
    del raw["subject"]


def _no_content(raw: dict[str, Any]) -> None:
    del raw["content"]


def _header_not_string(raw: dict[str, Any]) -> None:
    raw["personalizations"][0]["headers"]["X-Count"] = 3


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_big_substitutions, "personalizations.0.substitutions"),
        (_big_custom_args, "personalizations.1.custom_args"),
        (_eleven_categories, "categories"),
        (_long_category, "categories.0"),
        (_html_first, "content"),
        (_two_plain, "content"),
        (_empty_to, "personalizations.1.to"),
        (_no_subject, "subject"),
        (_no_content, "content"),
        (_header_not_string, "personalizations.0.headers.X-Count"),
    ],
)
def test_contract_violations_are_400_naming_the_field(
    sg: SendGridStandIn, client: SendGridAPIClient, mutate: Any, field: str
) -> None:
    raw = body(2)
    mutate(raw)
    with pytest.raises(BadRequestsError) as caught:
        client.send(raw)
    assert [e["field"] for e in errors_of(caught.value)] == [field]
    assert sg.accepted == [] and sg.rejected[0][0] == 400


def test_size_limits_are_exact(client: SendGridAPIClient) -> None:
    raw = body(2)
    raw["categories"] = [f"{n}" + "c" * 254 for n in range(10)]  # at most 10 categories of 255 characters
    raw["personalizations"][0]["substitutions"] = {"-a-": "x" * 9990}  # 10,000 bytes as JSON: at most
    raw["custom_args"] = {"campaign": "c" * 6000}  # 6,015 bytes as JSON
    raw["personalizations"][0]["custom_args"] = {"subscriber": "s" * 3967}  # 3,984: 9,999 in all, under
    raw["personalizations"][1]["custom_args"] = {"subscriber": "é" * 1000}  # 2,000 bytes of UTF-8
    assert client.send(raw).status_code == 202

    for where, mutate in [
        (
            "personalizations.0.substitutions",
            lambda r: r["personalizations"][0]["substitutions"].update({"-a-": "x" * 9991}),
        ),
        (
            "personalizations.0.custom_args",
            lambda r: r["personalizations"][0]["custom_args"].update(subscriber="s" * 3968),
        ),
        (
            "personalizations.1.custom_args",
            lambda r: r["personalizations"][1]["custom_args"].update(subscriber="é" * 1992),
        ),
    ]:
        over = copy.deepcopy(raw)
        mutate(over)
        with pytest.raises(BadRequestsError) as caught:
            client.send(over)
        assert [e["field"] for e in errors_of(caught.value)] == [where]


def test_every_personalization_with_a_subject_makes_the_top_subject_optional(client: SendGridAPIClient) -> None:
    raw = body(2)
    del raw["subject"]
    for p in raw["personalizations"]:
        p["subject"] = "Hi"
    assert client.send(raw).status_code == 202


# --- the JSON schema ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (
            lambda raw: raw.update(personalizations=[]),
            "personalizations",
            "You must have at least one personalization.",
        ),
        (lambda raw: raw.pop("from"), "from", "The from object must be provided"),
        (lambda raw: raw.update(custom_args="x"), "custom_args", "Invalid type. Expected: object, given: string."),
        (
            lambda raw: raw["personalizations"][1]["to"][0].update(email="not-an-address"),
            "personalizations.1.to.0.email",
            "Does not contain a valid address.",
        ),
        (lambda raw: raw["personalizations"][0].pop("to"), "personalizations.0.to", "The to array is required"),
        (
            lambda raw: raw["personalizations"][0].update(send_at="soon"),
            "personalizations.0.send_at",
            "Invalid type. Expected: integer, given: string.",
        ),
        (lambda raw: raw["content"][0].update(value=""), "content.0.value", "at least 1 characters"),
    ],
)
def test_schema_violation_is_400_naming_the_field(
    sg: SendGridStandIn, client: SendGridAPIClient, mutate: Any, field: str, message: str
) -> None:
    raw = body(2)
    mutate(raw)
    with pytest.raises(BadRequestsError) as caught:
        client.send(raw)
    [error] = errors_of(caught.value)
    assert error["field"] == field
    assert message in error["message"]
    assert sg.rejected == [(400, error["message"])]


def _item_variants() -> Iterator[Any]:
    """Personalization items around every rule of the item schema, valid and invalid."""
    valid: dict[str, Any] = {
        "to": [{"email": "a@example.com", "name": "A"}],
        "cc": [{"email": "b@example.com"}],
        "bcc": [{"email": "c@example.com"}],
        "from": {"email": "f@example.com", "name": "F"},
        "subject": "s",
        "headers": {"List-Unsubscribe": "<x>"},
        "substitutions": {"-a-": "1"},
        "dynamic_template_data": {"a": [1, {"b": None}]},
        "custom_args": {"k": "v"},
        "send_at": 1700000000,
        "unknown": {"anything": 1},  # keys the schema does not name are allowed
    }
    values: list[Any] = [
        None, True, False, 0, 1, 1.0, 1.5, "", "x", "a@b", [], [{}], [{"email": "a@b"}], [{"email": "ab"}],
        [{"email": "a@b", "name": None}], [{"email": "a@b", "name": "N"}], [{"name": "N"}], [{"email": 1}],
        ["a@b"], {}, {"email": "a@b"}, {"email": "ab"}, {"email": "a@b", "name": 1}, {"a": "b"}, {"a": 1},
        {"a": None}, [{"email": "a@b"}] * 1000, [{"email": "a@b"}] * 1001,
    ]  # fmt: skip
    yield valid
    yield {"to": []}
    yield {}
    yield from (None, [], "to", 1)
    for key in list(valid):
        without = dict(valid)
        del without[key]
        yield without
        for value in values:
            yield {**valid, key: value}
    yield {**valid, "substitutions": {f"k{n}": "v" for n in range(10000)}}
    yield {**valid, "substitutions": {f"k{n}": "v" for n in range(10001)}}
    yield {**valid, "custom_args": {f"k{n}": 1 for n in range(10000)}}
    yield {**valid, "custom_args": {f"k{n}": 1 for n in range(10001)}}


def test_hand_check_of_personalizations_agrees_with_jsonschema() -> None:
    schemas = _compile(str(SendGridStandIn().spec_path.resolve()))
    assert schemas.hand_check_matches, "the item schema changed: review _personalization_matches_schema"
    checked = 0
    for item in _item_variants():
        assert _personalization_matches_schema(item) == schemas.item.is_valid(item), item
        checked += 1
    assert checked > 300


def test_full_schema_mode_gives_the_same_answers(client: SendGridAPIClient) -> None:
    with SendGridStandIn(full_schema=True) as strict:
        strict_client = SendGridAPIClient(api_key="SG.test", host=strict.url)
        strict_client.client.timeout = TIMEOUT
        assert strict_client.send(newsletter(5)).status_code == 202
        raw = body(2)
        raw["personalizations"][1]["cc"] = [{"email": "nope"}]
        with pytest.raises(BadRequestsError) as strict_error:
            strict_client.send(copy.deepcopy(raw))
        with pytest.raises(BadRequestsError) as fast_error:
            client.send(raw)
        assert errors_of(strict_error.value) == errors_of(fast_error.value)


# --- authorisation, content type, size ------------------------------------------------------------


def test_missing_authorization_is_401(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    del client.client.request_headers["Authorization"]
    with pytest.raises(UnauthorizedError) as caught:
        client.send(newsletter(1))
    assert caught.value.status_code == 401
    assert caught.value.to_dict == {"errors": [{"message": AUTH_ERROR_MESSAGE, "field": None, "help": None}]}
    assert sg.accepted == []
    assert sg.rejected == [(401, AUTH_ERROR_MESSAGE)]


def test_keys_that_are_not_accepted_are_401(sg: SendGridStandIn) -> None:
    bad = SendGridAPIClient(api_key="not-a-sendgrid-key", host=sg.url)
    bad.client.timeout = TIMEOUT
    with pytest.raises(UnauthorizedError):
        bad.send(newsletter(1))

    with SendGridStandIn(api_keys={"SG.only-this"}) as strict:
        other = SendGridAPIClient(api_key="SG.test", host=strict.url)
        other.client.timeout = TIMEOUT
        with pytest.raises(UnauthorizedError):
            other.send(newsletter(1))
        good = SendGridAPIClient(api_key="SG.only-this", host=strict.url)
        good.client.timeout = TIMEOUT
        assert good.send(newsletter(1)).status_code == 202


def _post(url: str, data: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=data, headers={"Authorization": "Bearer SG.x", "Content-Type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, {}
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_content_type_must_be_json(sg: SendGridStandIn) -> None:
    status, answer = _post(sg.mail_send_url, json.dumps(body(1)).encode(), "text/plain")
    assert status == 400 and "application/json" in answer["errors"][0]["message"]
    status, answer = _post(sg.mail_send_url, b"{not json", "application/json")
    assert status == 400 and answer["errors"][0]["message"] == "Bad Request"


def test_body_over_the_limit_is_413(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    assert MAX_BODY_BYTES == 30_000_000 and sg.max_body_bytes == MAX_BODY_BYTES
    sg.max_body_bytes = 5_000  # the same code path as 30 MB, without moving 30 MB
    assert client.send(newsletter(2)).status_code == 202
    with pytest.raises(PayloadTooLargeError):
        client.send(newsletter(40))
    assert sg.rejected == [(413, "content too large")]


# --- scripted failures ----------------------------------------------------------------------------


def test_scripted_429_carries_the_rate_limit_headers(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    sg.fail_next(429, reset_in=1.0)
    before = time.time()
    with pytest.raises(TooManyRequestsError) as caught:
        client.send(newsletter(1))
    error = caught.value
    assert error.status_code == 429
    reset = error.headers["X-RateLimit-Reset"]
    assert reset.isdigit()  # unix time in whole seconds
    assert before + 1.0 <= int(reset) <= math.ceil(time.time() + 1.0)
    assert error.headers["X-RateLimit-Remaining"] == "0"
    assert int(error.headers["X-RateLimit-Limit"]) > 0
    assert errors_of(error) == [{"message": "too many requests", "field": None, "help": None}]
    assert sg.accepted == []

    assert client.send(newsletter(1)).status_code == 202  # the script is used up
    assert sg.requests == 2


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, BadRequestsError),
        (401, UnauthorizedError),
        (403, ForbiddenError),
        (413, PayloadTooLargeError),
        (500, InternalServerError),
        (503, ServiceUnavailableError),
    ],
)
def test_scripted_failures_raise_the_package_exception(
    sg: SendGridStandIn, client: SendGridAPIClient, status: int, exception: type[HTTPError]
) -> None:
    sg.fail_next(status, message="scripted")
    with pytest.raises(exception) as caught:
        client.send(newsletter(1))
    assert caught.value.status_code == status
    assert errors_of(caught.value) == [{"message": "scripted", "field": None, "help": None}]
    assert sg.accepted == [] and sg.rejected == [(status, "scripted")]


def test_scripted_failures_queue_in_order(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    sg.fail_next(503)
    sg.fail_next(500, times=2)
    raised = []
    for _ in range(3):
        with pytest.raises(HTTPError) as caught:
            client.send(newsletter(1))
        raised.append(type(caught.value))
    assert raised == [ServiceUnavailableError, InternalServerError, InternalServerError]
    assert client.send(newsletter(1)).status_code == 202


def test_stall_records_the_request_and_the_client_times_out(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    client.client.timeout = 0.2
    sg.stall_next(30)  # cut short when the stand-in stops
    started = time.monotonic()
    # urllib lets the read timeout of getresponse() through as the builtin TimeoutError (socket.timeout);
    # only a timeout while connecting or sending would arrive wrapped in urllib.error.URLError.
    with pytest.raises(TimeoutError):
        client.send(newsletter(2))
    assert time.monotonic() - started < 2
    deadline = time.monotonic() + 2  # recorded before the stall; on a loaded box, allow it a moment
    while not sg.accepted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sg.recipients() == ["user0@example.com", "user1@example.com"]  # it may have been accepted


def test_dropped_connection_records_the_request(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    sg.drop_next()
    with pytest.raises(http.client.RemoteDisconnected):
        client.send(newsletter(1))
    assert len(sg.accepted) == 1


def test_max_personalizations_answers_413_so_a_client_can_split(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    sg.max_personalizations = 10
    with pytest.raises(PayloadTooLargeError):
        client.send(newsletter(20))
    assert client.send(newsletter(10)).status_code == 202
    assert client.send(newsletter(10, start=10)).status_code == 202
    assert sg.recipients() == [f"user{n}@example.com" for n in range(20)]


def test_rate_limit(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    sg.set_rate_limit(2, window=60)
    client.send(newsletter(1))
    client.send(newsletter(1, start=1))
    with pytest.raises(TooManyRequestsError) as caught:
        client.send(newsletter(1, start=2))
    assert int(caught.value.headers["X-RateLimit-Reset"]) >= time.time() + 50
    sg.set_rate_limit(None)
    assert client.send(newsletter(1, start=2)).status_code == 202


# --- stats, reset, the separate process, speed ----------------------------------------------------


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return json.load(response)


def test_stats_and_reset_endpoints(sg: SendGridStandIn, client: SendGridAPIClient) -> None:
    client.send(newsletter(3))
    stats = _get_json(sg.url + "/_standin/stats")
    assert (stats["requests"], stats["accepted"], stats["recipients"]) == (1, 1, 3)
    urllib.request.urlopen(urllib.request.Request(sg.url + "/_standin/reset", method="POST"), timeout=TIMEOUT)
    assert _get_json(sg.url + "/_standin/stats")["requests"] == 0
    assert sg.accepted == [] and sg.recipients() == []


def test_runs_as_a_separate_process(tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.json"
    script = Path(__file__).with_name("sendgrid_standin.py")
    process = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--stats-file", str(stats_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        api = SendGridAPIClient(api_key="SG.test", host=url)
        api.client.timeout = TIMEOUT
        assert api.send(newsletter(4)).status_code == 202
        assert _get_json(url + "/_standin/stats")["recipients"] == 4
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    final = json.loads(out.strip().splitlines()[-1])
    assert (final["requests"], final["accepted"], final["recipients"]) == (1, 1, 4)
    assert json.loads(stats_file.read_text()) == final
