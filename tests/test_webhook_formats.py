"""The marketing tools' webhooks as connectors.webhooks reads them: each tool's signature accepted when right and
refused when wrong, missing or stale; bodies that are not the tool's format refused; a bad record inside a good
body quarantined while the rest reads; and every event read into the key, type and details its polling connector
gives the same event (the stand-ins render both; signatures are computed here, by the documented schemes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from config.loading import read_yaml
from config.sources import SourceConfig, load_sources
from connectors.marketing.hubspot import HubSpotSource, contact_person
from connectors.marketing.jsonl import JsonlSource
from connectors.marketing.mautic import MauticSource
from connectors.webhooks import Delivery, Refused, webhook_reader
from connectors.webhooks.common import Limits
from domain.activity import ActivityType
from sandbox import hubspot as hubspot_standin
from sandbox import mautic as mautic_standin
from sandbox import world as w
from sandbox.faults import RequestFaults
from sandbox.world import WorldSpec, generate

SOURCES = Path(__file__).resolve().parents[1] / "config" / "sources.yaml"
FORM_TYPES = read_yaml(SOURCES)["form_types"]
NOW = datetime(2026, 11, 2, 12, tzinfo=timezone.utc)
SECRET = "whsec-3f9a1c77d2"
URL = "https://handoff.example.com/webhooks/{}"


def source(kind: str, name: str | None = None, **options) -> SourceConfig:
    base = None if kind in ("webhook", "jsonl") else "http://127.0.0.1:9"
    return SourceConfig(name=name or kind, kind=kind, base_url=base, path="x.jsonl" if kind == "jsonl" else None,
                        form_types=FORM_TYPES, options=options)


def reader(kind: str, **options):
    return webhook_reader(source(kind, **options), {"webhook_token" if kind == "webhook" else "webhook_secret": SECRET})


def keys(delivery: Delivery) -> dict[str, tuple]:
    return {a.external_id: (a.type, a.asset, a.campaign, a.occurred_at, a.source_contact_id) for a in delivery.activities}


def assert_refused(call, status: int, *, said: str = "") -> Refused:
    with pytest.raises(Refused) as refused:
        call()
    assert refused.value.status == status, refused.value.reason
    assert said in refused.value.reason
    assert SECRET not in refused.value.reason and "\n" not in refused.value.reason
    return refused.value


@pytest.fixture(scope="module")
def world():
    return generate(WorldSpec(people=120, activities=1500))


def events_of(world, tool: str, kinds: tuple[str, ...], n: int = 3) -> list[w.Event]:
    """`n` good events of these kinds, the first of each kind first."""
    found = [e for e in world.tool_events(tool) if e.kind in kinds and not e.fault]
    firsts = [next(e for e in found if e.kind == kind) for kind in kinds if any(e.kind == kind for e in found)]
    chosen = (firsts + [e for e in found if e not in firsts])[:n]
    assert len(chosen) == n, kinds
    return chosen


# ---------------------------------------------------------------- Mautic

def mautic_signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "Webhook-Signature": base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()}


def mautic_polled(instance: mautic_standin.Instance, events: list[w.Event]):
    """The activity feed's records of these events and their contacts, as the polling connector reads them."""
    poll = MauticSource(source("mautic"), {"username": "u", "password": "p"})

    def get(path, params, records=""):
        ids = params["where[0][val]"].split(",")
        if path == "/api/contacts":
            return {"contacts": {i: instance.contact(int(i), True, tuple(params["select[]"])) for i in ids}}
        return {"emails": [instance.email_entity(name) for name, (eid, _) in instance.emails.items() if str(eid) in ids]}

    poll._get = get
    page, _ = poll._page([instance.render(mautic_standin.KIND_TYPE[e.kind], e) for e in events], limit=1000)
    return page


def mautic_body(instance: mautic_standin.Instance, events: list[w.Event]) -> bytes:
    batch: dict[str, list] = {}
    for event in events:
        for kind, payload in instance.webhook(event):
            batch.setdefault(kind, []).append(payload)
    return mautic_standin.php_json(batch)


@pytest.mark.parametrize("kinds", [(w.DEMO_REQUESTED, w.TRIAL_STARTED, w.CONTACT_SALES, w.SUBSCRIBED),
                                   (w.EMAIL_CLICKED,), (w.PAGE_VISITED,), (w.EMAIL_OPENED,)],
                         ids=["form submissions", "e-mail clicks", "page hits", "e-mail opens"])
def test_a_signed_mautic_webhook_reads_into_the_keys_and_details_the_activity_feed_gives(world, kinds):
    instance = mautic_standin.Instance(world)
    events = events_of(world, "mautic", kinds)
    body = mautic_body(instance, events)
    delivery = reader("mautic").read("POST", URL.format("mautic"), mautic_signed(body), body, NOW)
    polled = mautic_polled(instance, events)
    assert keys(delivery) == {a.external_id: (a.type, a.asset, a.campaign, a.occurred_at, a.source_contact_id)
                              for a in polled.activities}
    assert delivery.rejections == []
    assert {(p.source_contact_id, p.email, tuple(sorted(p.fields().items()))) for p in delivery.people} == \
        {(p.source_contact_id, p.email, tuple(sorted(p.fields().items()))) for p in polled.people}


def test_a_mautic_points_change_brings_the_contact_and_no_activity(world):
    instance = mautic_standin.Instance(world)
    [event] = events_of(world, "mautic", (w.PAGE_VISITED,), 1)
    [_, (kind, payload)] = instance.webhook(event)
    body = json.dumps({kind: [payload]}).encode()
    delivery = reader("mautic").read("POST", URL.format("mautic"), mautic_signed(body), body, NOW)
    assert (kind, delivery.activities) == ("mautic.lead_points_change", [])
    [person] = delivery.people
    assert person.source_contact_id == str(event.person + 1) and person.company


@pytest.mark.parametrize("headers, said", [({}, "no Webhook-Signature"),
                                           (mautic_signed(b"{}", "another-secret"), "does not match")])
def test_a_mautic_webhook_without_its_signature_is_refused_before_it_is_read(headers, said):
    assert_refused(lambda: reader("mautic").read("POST", URL.format("mautic"), headers, b"not json", NOW), 401,
                   said=said)


def test_a_mautic_body_signed_by_one_secret_and_changed_after_is_refused():
    body = b'{"mautic.form_on_submit": []}'
    headers = mautic_signed(body)
    assert_refused(lambda: reader("mautic").read("POST", URL.format("mautic"), headers, body + b" ", NOW), 401)


# ---------------------------------------------------------------- HubSpot

def v3(body: bytes, *, url: str, stamp: int, secret: str = SECRET, method: str = "POST") -> dict[str, str]:
    """Signature v3 as HubSpot's docs describe it: the URL with its listed escapes decoded."""
    uri = url
    for escape, char in {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
                         "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}.items():
        uri = uri.replace(escape, char)
    digest = hmac.new(secret.encode(), f"{method}{uri}".encode() + body + str(stamp).encode(), hashlib.sha256).digest()
    return {"X-HubSpot-Signature-v3": base64.b64encode(digest).decode(), "X-HubSpot-Request-Timestamp": str(stamp)}


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def hubspot_polled(hub: hubspot_standin.HubSpot, events: list[w.Event]) -> dict[str, tuple]:
    poll = HubSpotSource(source("hubspot"), {"access_token": "t"})
    poll._forms = {guid: name for name, guid in hub.forms.items()}
    return {a.external_id: (a.type, a.asset, a.campaign, a.occurred_at, a.source_contact_id)
            for a in (poll._web_activity(hub.render_web_event(e)) for e in events)}


FORMS = (w.DEMO_REQUESTED, w.TRIAL_STARTED, w.CONTACT_SALES, w.SUBSCRIBED, w.WHITEPAPER_DOWNLOADED, w.WEBINAR_REGISTERED)


def test_a_signed_hubspot_app_webhook_reads_each_submission_into_the_events_api_s_key(world):
    hub = hubspot_standin.HubSpot(world, RequestFaults(), hubspot_standin.new_credentials())
    events = events_of(world, "hubspot", FORMS, 6)
    body = json.dumps([hub.app_event(e, 0) for e in events] + [
        {"eventId": 9, "subscriptionType": "contact.creation", "objectId": 101, "occurredAt": ms(NOW)}]).encode()
    url = URL.format("hubspot")
    delivery = reader("hubspot").read("POST", url, v3(body, url=url, stamp=ms(NOW)), body, NOW)
    assert keys(delivery) == hubspot_polled(hub, events)
    assert {a.type for a in delivery.activities} >= {ActivityType.DEMO_REQUEST, ActivityType.WHITEPAPER_DOWNLOAD}
    assert delivery.rejections == []  # the contact's creation is no activity: passed over


def test_a_hubspot_workflow_webhook_brings_the_contact_s_details_and_its_submission(world):
    hub = hubspot_standin.HubSpot(world, RequestFaults(), hubspot_standin.new_credentials())
    [event] = events_of(world, "hubspot", (w.DEMO_REQUESTED, w.TRIAL_STARTED, w.CONTACT_SALES), 1)
    body = json.dumps(hub.workflow_contact(event)).encode()
    url = URL.format("hubspot")
    delivery = reader("hubspot").read("POST", url, v3(body, url=url, stamp=ms(NOW)), body, NOW)
    assert keys(delivery) == hubspot_polled(hub, [event])
    [person] = delivery.people
    polled = contact_person("hubspot", hub.render_contact(world.people[event.person],
                                                          list(hubspot_standin.CONTACT_PROPERTIES)))
    assert (person.source_contact_id, person.email, person.fields()) == \
        (polled.source_contact_id, polled.email, polled.fields())


def test_hubspot_signs_the_url_with_its_listed_escapes_decoded():
    body = b"[]"
    url = "https://handoff.example.com/webhooks/hubspot?portal=40212733&after=2026-11-02T10%3A00%3A00Z"
    assert reader("hubspot").read("POST", url, v3(body, url=url, stamp=ms(NOW)), body, NOW) == Delivery()


@pytest.mark.parametrize("change, said", [
    (lambda h: {}, "no X-HubSpot-Signature-v3"),
    (lambda h: {**h, "X-HubSpot-Request-Timestamp": "soon"}, "not epoch milliseconds"),
    (lambda h: {**h, "X-HubSpot-Signature-v3": v3(b"[]", url=URL.format("hubspot"), stamp=ms(NOW),
                                                    secret="other")["X-HubSpot-Signature-v3"]}, "does not match"),
    (lambda h: {**h, "X-HubSpot-Request-Timestamp": str(ms(NOW) + 1)}, "does not match"),
], ids=["missing", "no timestamp", "wrong secret", "timestamp changed"])
def test_a_hubspot_webhook_with_a_bad_signature_is_refused(change, said):
    headers = change(v3(b"[]", url=URL.format("hubspot"), stamp=ms(NOW)))
    assert_refused(lambda: reader("hubspot").read("POST", URL.format("hubspot"), headers, b"[]", NOW), 401, said=said)


def test_a_hubspot_webhook_older_than_five_minutes_is_refused_even_when_its_signature_holds():
    stamp, url = ms(NOW - timedelta(minutes=5, seconds=1)), URL.format("hubspot")
    assert_refused(lambda: reader("hubspot").read("POST", url, v3(b"[]", url=url, stamp=stamp), b"[]", NOW), 401,
                   said="301 s old")
    fresh = ms(NOW - timedelta(minutes=4, seconds=59))
    assert reader("hubspot").read("POST", url, v3(b"[]", url=url, stamp=fresh), b"[]", NOW) == Delivery()


def test_a_hubspot_signature_is_judged_on_the_machine_s_clock_and_its_records_on_the_business_clock(world):
    """A world (the demo's, a backfill's) whose clock runs a week ahead of this machine's: the signature, stamped
    now by the machine, holds; the submission, made at the world's time, is not "in the future"."""
    hub = hubspot_standin.HubSpot(world, RequestFaults(), hubspot_standin.new_credentials())
    [event] = events_of(world, "hubspot", (w.DEMO_REQUESTED,), 1)
    body, url = json.dumps([hub.app_event(event, 0)]).encode(), URL.format("hubspot")
    machine = NOW - timedelta(days=7)
    delivery = reader("hubspot").read("POST", url, v3(body, url=url, stamp=ms(machine)), body, NOW,
                                      received_at=machine)
    assert keys(delivery) == hubspot_polled(hub, [event]) and delivery.rejections == []
    assert_refused(lambda: reader("hubspot").read("POST", url, v3(body, url=url, stamp=ms(machine)), body, NOW),
                   401, said="old")  # judged on the business clock, the same signature would be a week stale


def test_a_hubspot_signature_holds_only_for_the_url_it_was_posted_to():
    signed = v3(b"[]", url=URL.format("hubspot"), stamp=ms(NOW))
    assert_refused(lambda: reader("hubspot").read("POST", URL.format("hubspot-eu"), signed, b"[]", NOW), 401)


# ---------------------------------------------------------------- Marketo

TEMPLATE_BODY = {"lead_id": "100017", "email": "Ada.Adams@Northwind.example", "form": "Demo Request",
                 "occurred_at": "2026-11-02 05:30:00", "campaign": "Q4 Demo Push", "first_name": "Ada",
                 "last_name": "Adams", "company": "Northwind", "title": "VP of Sales", "industry": "Software",
                 "company_size": "350", "country": "US", "lead_source_channel": "Referral", "product_interest": ""}


def test_a_marketo_webhook_with_the_shared_secret_reads_the_template_into_an_activity_and_the_lead():
    body = json.dumps(TEMPLATE_BODY).encode()
    marketo = reader("marketo", webhook_timezone="America/Chicago")
    delivery = marketo.read("POST", URL.format("marketo"), {"x-handoff-webhook-secret": SECRET}, body, NOW)
    [activity], [person] = delivery.activities, delivery.people
    assert (activity.type, activity.asset, activity.campaign, activity.email, activity.source_contact_id) == \
        (ActivityType.DEMO_REQUEST, "Demo Request", "Q4 Demo Push", "ada.adams@northwind.example", "100017")
    assert activity.occurred_at == datetime(2026, 11, 2, 11, 30, tzinfo=timezone.utc)  # 05:30 in Chicago (CST)
    assert activity.external_id == f"webhook-100017-demo_request-{ms(activity.occurred_at)}"
    assert (person.company_size, person.title, person.product_interest) == (350, "VP of Sales", None)
    again = marketo.read("POST", URL.format("marketo"), {"X-Handoff-Webhook-Secret": SECRET}, body, NOW)
    assert keys(again) == keys(delivery)  # Marketo sending it twice stores it once


@pytest.mark.parametrize("headers, said", [({}, "no X-Handoff-Webhook-Secret"),
                                           ({"X-Handoff-Webhook-Secret": SECRET + "x"}, "not this source's secret")])
def test_a_marketo_webhook_without_the_shared_secret_is_refused(headers, said):
    assert_refused(lambda: reader("marketo").read("POST", URL.format("marketo"), headers, b"{}", NOW), 401, said=said)


# ---------------------------------------------------------------- the generic JSON Lines endpoint

LINES = [{"id": "w-1", "email": "ada@acme.example", "type": "webinar_attended", "occurred_at": "2026-10-30T15:00:00Z",
          "asset": "Pipeline Alignment Live", "company": "Acme", "company_size": 250},
         {"id": "w-2", "email": "bob@acme.example", "type": "booth_visit", "occurred_at": "2026-10-30T15:05:00Z"},
         {"id": "w-3", "contact_id": 77, "type": "demo_request", "occurred_at": 1793620800}]


def test_json_lines_posted_with_the_token_read_as_the_file_source_reads_them(tmp_path):
    body = b"\n".join(json.dumps(line).encode() for line in LINES) + b"\n"
    delivery = reader("webhook", name="inbound").read(
        "POST", URL.format("inbound"), {"Authorization": f"Bearer {SECRET}"}, body, NOW)
    (tmp_path / "same.jsonl").write_bytes(body)
    [page] = JsonlSource(SourceConfig(name="inbound", kind="jsonl", path=str(tmp_path))).pages(None)
    assert keys(delivery) == {a.external_id: (a.type, a.asset, a.campaign, a.occurred_at, a.source_contact_id)
                              for a in page.activities} and set(keys(delivery)) == {"w-1", "w-3"}
    [bad] = delivery.rejections
    assert bad.reason == "line 2: unknown activity type 'booth_visit'" and b"booth_visit" in bad.raw.encode()
    assert [p.company_size for p in delivery.people] == [250]


@pytest.mark.parametrize("headers, said", [({}, "no Authorization"), ({"Authorization": "Basic abc"}, "no Authorization"),
                                           ({"Authorization": "Bearer nope"}, "not this source's")])
def test_the_generic_endpoint_wants_its_bearer_token(headers, said):
    assert_refused(lambda: reader("webhook", name="inbound").read("POST", URL.format("inbound"), headers, b"{}", NOW),
                   401, said=said)


# ---------------------------------------------------------------- every kind

SIGNERS = {
    "mautic": lambda body: mautic_signed(body),
    "hubspot": lambda body: v3(body, url=URL.format("hubspot"), stamp=ms(NOW)),
    "marketo": lambda body: {"X-Handoff-Webhook-Secret": SECRET},
    "webhook": lambda body: {"Authorization": f"Bearer {SECRET}"},
}


def signed_read(kind: str, body: bytes) -> Delivery:
    name = "inbound" if kind == "webhook" else kind
    url = URL.format("hubspot" if kind == "hubspot" else name)
    return reader(kind, name=name).read("POST", url, SIGNERS[kind](body), body, NOW)


@pytest.mark.parametrize("kind, body", [
    ("mautic", b"<html>"), ("mautic", b'[{"mautic.form_on_submit": []}]'), ("mautic", b""),
    ("hubspot", b"{not json"), ("hubspot", b'"a string"'), ("hubspot", b"17"),
    ("marketo", b"lead_id=7&email=x"), ("marketo", b'[{"lead_id": 7}]'),
    ("webhook", b"hello"), ("webhook", b"[1, 2]\n17\n"), ("webhook", b"\n\n"),
])
def test_a_signed_body_that_is_not_the_tool_s_format_is_refused_400(kind, body):
    refused = assert_refused(lambda: signed_read(kind, body), 400)
    assert body.decode("utf-8", "replace")[:6] not in refused.reason or not body


@pytest.mark.parametrize("kind", sorted(SIGNERS))
def test_a_body_bigger_than_the_reader_takes_is_refused_413(kind):
    body = b"[" + b" " * (Limits().max_body_bytes) + b"]"
    assert_refused(lambda: signed_read(kind, body), 413)


def test_a_bad_record_in_a_good_mautic_body_is_quarantined_with_its_reason_while_the_rest_reads(world):
    instance = mautic_standin.Instance(world)
    events = events_of(world, "mautic", (w.DEMO_REQUESTED, w.TRIAL_STARTED, w.CONTACT_SALES, w.SUBSCRIBED), 2)
    good = json.loads(mautic_body(instance, events))
    broken = json.loads(json.dumps(good["mautic.form_on_submit"][0]))
    broken["submission"].update(id=999999, dateSubmitted="yesterday-ish")
    broken["timestamp"] = None
    good["mautic.form_on_submit"] += [broken, 17]
    body = json.dumps(good).encode()[:-2] + b', {"submission": NaN}]}'
    delivery = signed_read("mautic", body)
    assert set(keys(delivery)) == {f"form.submitted{e.id}" for e in events}
    reasons = sorted(r.reason for r in delivery.rejections)
    assert reasons[0] == "a mautic.form_on_submit event is not a JSON object"
    assert reasons[1].startswith("not valid JSON")
    assert reasons[2] == "unparseable occurred_at 'yesterday-ish'"


def test_a_bad_record_in_a_good_hubspot_batch_is_quarantined_with_its_reason_while_the_rest_reads(world):
    hub = hubspot_standin.HubSpot(world, RequestFaults(), hubspot_standin.new_credentials())
    events = events_of(world, "hubspot", FORMS, 2)
    events_json = [hub.app_event(e, 0) for e in events]
    no_contact = {**events_json[0], "objectId": None}
    late = {**events_json[1], "occurredAt": "a while ago"}
    body = json.dumps(events_json + [no_contact, late, "17"]).encode()
    delivery = signed_read("hubspot", body)
    assert set(keys(delivery)) == {hubspot_standin.native_id(e) for e in events}
    assert sorted(r.reason for r in delivery.rejections) == [
        "a webhook event is not a JSON object", "form submission at an unreadable time 'a while ago'",
        "form submission without a contact id"]


def test_records_are_screened_as_the_polling_path_screens_them():
    future = {**LINES[0], "id": "w-future", "occurred_at": (NOW + timedelta(hours=2)).isoformat()}
    odd_person = {**LINES[0], "id": "w-odd", "company_size": "a few"}
    body = json.dumps(future).encode() + b"\n" + json.dumps(odd_person).encode()
    delivery = signed_read("webhook", body)
    assert set(keys(delivery)) == {"w-odd"}
    assert [p.company_size for p in delivery.people] == [250]  # the future activity's person stands, as when polled
    assert sorted(r.reason.split(":")[0] for r in delivery.rejections) == ["line 2", "occurred_at 2026-11-02T14"]


# ---------------------------------------------------------------- which sources take webhooks

def test_a_source_takes_webhooks_only_once_its_secret_or_token_is_set():
    assert webhook_reader(source("mautic"), {"username": "u", "webhook_secret": ""}) is None
    assert webhook_reader(source("jsonl", name="files"), {"webhook_secret": SECRET}) is None
    assert webhook_reader(source("webhook", name="inbound"), {"webhook_secret": SECRET}) is None  # a token, not this
    assert {webhook_reader(source(kind), {"webhook_secret": SECRET}).source for kind in ("mautic", "hubspot", "marketo")} \
        == {"mautic", "hubspot", "marketo"}


def test_the_shipped_sources_file_reads_each_webhook_secret_from_the_environment():
    env = {"HANDOFF_MAUTIC_ENABLED": "true", "HANDOFF_MAUTIC_BASE_URL": "https://m.example", "HANDOFF_MAUTIC_USERNAME": "u",
           "HANDOFF_MAUTIC_PASSWORD": "p", "HANDOFF_MAUTIC_WEBHOOK_SECRET": SECRET,
           "HANDOFF_INBOUND_ENABLED": "true", "HANDOFF_INBOUND_WEBHOOK_TOKEN": "t0ken"}
    mautic, inbound = load_sources(SOURCES, env=env)
    assert (mautic.credentials["webhook_secret"].get_secret_value(), inbound.kind) == (SECRET, "webhook")
    assert SECRET not in repr(mautic)
    assert load_sources(SOURCES, env={k: v for k, v in env.items() if "WEBHOOK" not in k and "INBOUND" not in k})[0] \
        .credentials["webhook_secret"].get_secret_value() == ""
