"""Salesforce stand-in: real HTTP in Salesforce's wire shapes, read by requests and by simple-salesforce itself."""

from __future__ import annotations

import csv
import io
import re
import time
from urllib.parse import urlencode, urlsplit

import jwt
import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound
from simple_salesforce.format import format_soql

from sandbox import salesforce as standin
from sandbox.salesforce import SalesforceFaults
from sandbox.salesforce_org import Org as SalesforceOrg, WriteContext
from sandbox.salesforce_schema import LEAD_STATUSES, checksum, full_id
from sandbox.soql import SoqlError, parse
from sandbox.world import WorldSpec, generate

SPEC = WorldSpec(people=200, activities=400)
SALESFORCE_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000$")
NO_ASSIGN = {"Sforce-Auto-Assign": "FALSE"}


class ToStandIn(HTTPAdapter):
    """simple-salesforce builds https:// URLs only: this sends every https request to the stand-in over http."""

    def __init__(self, base: str):
        super().__init__()
        self.base = base

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        request.url = self.base + request.url[len(f"{parts.scheme}://{parts.netloc}"):]
        return super().send(request, **kwargs)


class Org:
    """One running stand-in with a simple-salesforce client (client credentials) and raw HTTP helpers."""

    def __init__(self, box):
        self.box, self.url = box, box.url("salesforce")
        self.creds, self.faults = box.credentials["salesforce"], box.faults["salesforce"]
        self.session = requests.Session()
        self.session.mount("https://", ToStandIn(self.url))
        self.sf = Salesforce(consumer_key=self.creds["client_id"], consumer_secret=self.creds["client_secret"],
                             domain="handoff-sandbox.my", session=self.session)
        self.data = f"{self.url}/services/data/v59.0/"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.sf.session_id}", **kwargs.pop("headers", {})}
        return requests.request(method, self.data + path, headers=headers, timeout=kwargs.pop("timeout", 30), **kwargs)

    def soql(self, query: str, deleted: bool = False) -> list[dict]:
        return self.sf.query_all(query, include_deleted=deleted)["records"]

    def user_id(self, username_start: str) -> str:
        return self.soql(f"SELECT Id FROM User WHERE Username LIKE '{username_start}%'")[0]["Id"]

    def control(self, path: str, body: dict) -> dict:
        response = requests.post(self.url + path, json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def calls(self) -> dict:
        return requests.get(self.url + "/_sandbox/salesforce/calls", timeout=10).json()

    def create(self, records: list[dict], all_or_none: bool = False, headers=NO_ASSIGN) -> list[dict]:
        body = {"allOrNone": all_or_none, "records": [{"attributes": {"type": "Lead"}, **r} for r in records]}
        response = self.call("POST", "composite/sobjects", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    def bulk(self, operation: str, rows: list[list], external: str | None = None) -> tuple[dict, str]:
        job = self.call("POST", "jobs/ingest", json={"object": "Lead", "operation": operation, "contentType": "CSV",
                                                     "lineEnding": "LF", "externalIdFieldName": external}).json()
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        assert self.call("PUT", f"jobs/ingest/{job['id']}/batches", data=out.getvalue().encode(),
                         headers={"Content-Type": "text/csv"}).status_code == 201
        assert self.call("PATCH", f"jobs/ingest/{job['id']}", json={"state": "UploadComplete"}).json()["state"] \
            == "UploadComplete"
        for _ in range(200):
            info = self.call("GET", f"jobs/ingest/{job['id']}").json()
            if info["state"] in ("JobComplete", "Failed"):
                return info, job["id"]
            time.sleep(0.02)
        raise AssertionError("bulk job never finished")

    def results(self, job_id: str, kind: str) -> list[dict]:
        return list(csv.DictReader(io.StringIO(self.call("GET", f"jobs/ingest/{job_id}/{kind}").text)))


@pytest.fixture
def start(sandbox_factory):
    def start(spec: WorldSpec = SPEC, **faults) -> Org:
        return Org(sandbox_factory(spec, tools=(), crm=True, faults={"salesforce": SalesforceFaults(**faults)}))
    return start


@pytest.fixture(scope="module")
def shared():
    """One stand-in for the tests that only add records of their own (each under its own keys)."""
    from sandbox.stack import start_sandbox
    box = start_sandbox(SPEC, tools=(), crm=True)
    try:
        yield Org(box)
    finally:
        box.stop()


# ---------------------------------------------------------------- ids and SOQL syntax (no server)

def test_ids_carry_salesforces_case_safe_suffix():
    assert checksum("001D000000IRFma") == "IAH"  # the Account id in Salesforce's own query example
    assert checksum("01gD0000002HU6K") == "IAW"  # and its query locator
    assert full_id("001D000000IRFma") == "001D000000IRFmaIAH"
    assert full_id("001D000000IRFmaIAX") is None


def test_soql_wants_parentheses_to_mix_and_with_or():
    with pytest.raises(SoqlError) as caught:
        parse("SELECT Id FROM Lead WHERE Email = 'a' AND LastName = 'b' OR Company = 'c'")
    assert caught.value.code == "MALFORMED_QUERY" and "unexpected token: OR" in caught.value.message
    assert parse("SELECT Id FROM Lead WHERE (Email = 'a' AND LastName = 'b') OR Company = 'c'").where[0] == "or"


def test_the_org_at_a_given_clock_does_not_depend_on_how_often_it_was_asked():
    def month(steps: int) -> dict:
        world = generate(SPEC)
        org = SalesforceOrg(world)
        ctx = WriteContext(org.user("integration"), world.clock)
        for i in range(30):
            org.create(org.sobject("Lead"), {"LastName": f"L{i}", "Company": "C", "Country": ("US", "GB", "BR")[i % 3]}, ctx)
        for _ in range(steps):
            world.advance(30 * 24 / steps)
            org.catch_up()
        return {kind: {i: dict(r) for i, r in records.items()} for kind, records in org.records.items()}

    once = month(1)
    assert once == month(30) == month(720)
    assert once["task"] and once["opportunity"]


# ---------------------------------------------------------------- OAuth

@pytest.mark.slow
def test_client_credentials_grant_answers_salesforces_token_shape(shared):
    response = requests.post(f"{shared.url}/services/oauth2/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": shared.creds["client_id"],
        "client_secret": shared.creds["client_secret"]})
    token = response.json()
    assert response.status_code == 200
    assert set(token) >= {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"}
    assert token["token_type"] == "Bearer" and token["instance_url"] == shared.url
    org_id, user_id = token["id"].rsplit("/", 2)[-2:]
    assert org_id.startswith("00D") and user_id == shared.user_id("handoff.integration")
    assert token["issued_at"].isdigit() and token["access_token"].startswith(org_id[:15] + "!")


@pytest.mark.slow
def test_jwt_bearer_grant_runs_as_the_named_user(shared):
    admin = "dana.whitfield@handoff-demo.example"
    sf = Salesforce(username=admin, consumer_key=shared.creds["client_id"],
                    privatekey=shared.creds["private_key_pem"], session=shared.session)  # aud https://login.salesforce.com
    created = sf.Lead.create({"LastName": "Jwt", "Company": "Signed", "Handoff_Id__c": "jwt-1"}, headers=NO_ASSIGN)
    assert sf.Lead.get(created["id"])["CreatedById"] == shared.user_id("dana.whitfield")

    def grant(**claims):
        base = {"iss": shared.creds["client_id"], "sub": admin, "aud": shared.url, "exp": int(time.time()) + 120}
        key = claims.pop("key", shared.creds["private_key_pem"])
        assertion = jwt.encode({**base, **claims}, key, algorithm="RS256")
        return requests.post(f"{shared.url}/services/oauth2/token", timeout=10,
                             data={"grant_type": standin.JWT_GRANT, "assertion": assertion})

    assert grant().status_code == 200  # aud = the stand-in's own login URL
    assert grant(aud="https://example.com").json() == {"error": "invalid_grant", "error_description": "audience is invalid"}
    assert grant(exp=int(time.time()) - 60).json()["error_description"] == "expired authorization code"
    assert grant(sub="nobody@handoff-demo.example").json()["error_description"] == "user hasn't approved this consumer"
    other_key = standin.new_credentials()["private_key_pem"]
    assert grant(key=other_key).json() == {"error": "invalid_grant", "error_description": "invalid assertion"}


@pytest.mark.slow
def test_bad_secret_is_invalid_client(shared):
    def token(**form):
        return requests.post(f"{shared.url}/services/oauth2/token", data=form, timeout=10)

    bad = token(grant_type="client_credentials", client_id=shared.creds["client_id"], client_secret="nope")
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid_client", "error_description": "invalid client credentials"})
    unknown = token(grant_type="client_credentials", client_id="3MVGnope", client_secret="x")
    assert unknown.json()["error"] == "invalid_client_id"
    assert token(grant_type="password").json()["error"] == "unsupported_grant_type"


@pytest.mark.slow
def test_an_expired_session_is_invalid_session_id_and_simple_salesforce_signs_in_again(start, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(standin, "_clock", lambda: now[0])
    org = start(token_ttl_seconds=60)
    assert org.call("GET", "limits").status_code == 200
    now[0] += 61
    expired = org.call("GET", "limits")
    assert (expired.status_code, expired.json()) == (401, [{"message": "Session expired or invalid",
                                                            "errorCode": "INVALID_SESSION_ID"}])
    assert org.sf.query("SELECT COUNT() FROM User")["totalSize"] == 12  # refreshed its token and retried
    assert org.calls()["calls"]["token"] == 2


# ---------------------------------------------------------------- queries

@pytest.mark.slow
def test_query_pages_through_next_records_url_with_the_batch_size_asked_for(start):
    org = start()
    info, _ = org.bulk("insert", [["LastName", "Company", "Handoff_Id__c"]] +
                       [[f"Page{i}", "Paging Co", f"page-{i}"] for i in range(4500)])
    assert info["numberRecordsProcessed"] == 4500 and info["numberRecordsFailed"] == 0
    query = "SELECT Id, Handoff_Id__c FROM Lead WHERE Company = 'Paging Co' ORDER BY Handoff_Id__c"
    first = org.call("GET", "query", params={"q": query}).json()
    assert (first["totalSize"], first["done"], len(first["records"])) == (4500, False, 2000)
    assert re.fullmatch(r"/services/data/v59\.0/query/01g[A-Za-z0-9]{15}-2000", first["nextRecordsUrl"])
    second = requests.get(org.url + first["nextRecordsUrl"], timeout=10,
                          headers={"Authorization": f"Bearer {org.sf.session_id}"}).json()
    assert len(second["records"]) == 2000 and second["nextRecordsUrl"].endswith("-4000")
    pages = [len(first["records"])]
    small = org.call("GET", "queryAll", params={"q": query}, headers={"Sforce-Query-Options": "batchSize=500"}).json()
    pages = [len(small["records"])]
    while not small["done"]:
        locator = small["nextRecordsUrl"].rsplit("/", 1)[1]
        small = org.call("GET", f"queryAll/{locator}").json()  # the same locator reads under queryAll/
        pages.append(len(small["records"]))
    assert pages == [500] * 9
    tiny = org.call("GET", "query", params={"q": query}, headers={"Sforce-Query-Options": "batchSize=50"}).json()
    assert len(tiny["records"]) == 200  # Salesforce's minimum batch
    every = org.sf.query_all(query)["records"]
    assert [r["Handoff_Id__c"] for r in every] == sorted(f"page-{i}" for i in range(4500))
    gone = org.call("GET", "query/01gD0000002HU6KIAW-2000")
    assert gone.json() == [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]


@pytest.mark.slow
def test_query_all_shows_the_admins_merge_and_delete(start):
    org = start()
    live_before = {r["Id"] for r in org.soql("SELECT Id FROM Lead")}
    org.control("/_sandbox/clock", {"advance_hours": 48})
    live = {r["Id"] for r in org.soql("SELECT Id FROM Lead")}
    everything = org.soql("SELECT Id, Name, IsDeleted, MasterRecordId, LastModifiedById FROM Lead "
                          "WHERE IsDeleted = true", deleted=True)
    merged = [r for r in everything if r["MasterRecordId"]]
    deleted = [r for r in everything if not r["MasterRecordId"]]
    assert len(merged) == 1 and len(deleted) == 1 and deleted[0]["Name"] == "Test Test"
    assert merged[0]["MasterRecordId"] in live and merged[0]["Id"] not in live
    assert live == live_before - {merged[0]["Id"], deleted[0]["Id"]}
    assert {r["LastModifiedById"] for r in everything} == {org.user_id("dana.whitfield")}


@pytest.fixture(scope="module")
def soql_leads(shared):
    rows = [("Ames", 10, "2026-11-20T09:00:00Z", "Scoring"), ("Baker", 20, "2026-11-20T10:00:00Z", "Routing"),
            ("Chen", 30, "2026-11-20T11:30:00+01:00", "SLA"), ("d'Arcy", None, None, "Scoring"),
            ("Evans", 50, "2026-11-21T00:00:00.000+0000", None), ("Ames", 60, "2026-11-19T23:59:59Z", "Routing")]
    results = shared.create([{"LastName": name, "Company": "Soql Co", "Handoff_Id__c": f"soql-{n}", "Handoff_Score__c": score,
                              "Handoff_MQL_Date__c": mql, "Product_Line__c": line}
                             for n, (name, score, mql, line) in enumerate(rows, start=1)])
    assert all(r["success"] for r in results)
    return shared


def _keys(org: Org, where: str, tail: str = "") -> list[str]:
    query = f"SELECT Handoff_Id__c FROM Lead WHERE Company = 'Soql Co' AND ({where}) {tail}"
    return [r["Handoff_Id__c"] for r in org.soql(query)]


@pytest.mark.slow
@pytest.mark.parametrize("where, expected", [
    ("Handoff_Score__c = 20", {"soql-2"}),
    ("Handoff_Score__c != 20", {"soql-1", "soql-3", "soql-4", "soql-5", "soql-6"}),  # != sees nulls, as in SOQL
    ("Handoff_Score__c > 20", {"soql-3", "soql-5", "soql-6"}),
    ("Handoff_Score__c >= 20", {"soql-2", "soql-3", "soql-5", "soql-6"}),
    ("Handoff_Score__c < 20", {"soql-1"}),
    ("Handoff_Score__c <= 20", {"soql-1", "soql-2"}),
    ("Handoff_Score__c = null", {"soql-4"}),
    ("LastName LIKE 'a_ES'", {"soql-1", "soql-6"}),
    ("LastName LIKE '%e%'", {"soql-1", "soql-2", "soql-3", "soql-5", "soql-6"}),
    ("LastName IN ('ames', 'CHEN')", {"soql-1", "soql-3", "soql-6"}),
    ("LastName NOT IN ('ames', 'CHEN')", {"soql-2", "soql-4", "soql-5"}),
    ("LastName = 'd\\'Arcy'", {"soql-4"}),
    ("(Product_Line__c = 'Scoring' OR Product_Line__c = 'SLA') AND NOT Handoff_Score__c = null", {"soql-1", "soql-3"}),
    ("NOT (Product_Line__c = 'Routing' OR Product_Line__c = null)", {"soql-1", "soql-3", "soql-4"}),
    ("Handoff_MQL_Date__c > 2026-11-20T10:00:00Z", {"soql-3", "soql-5"}),
    ("Handoff_MQL_Date__c >= 2026-11-20T10:00:00.000+0000", {"soql-2", "soql-3", "soql-5"}),
    ("Handoff_MQL_Date__c = 2026-11-20T11:00:00+01:00", {"soql-2"}),  # the same instant written with an offset
    ("Handoff_MQL_Date__c < 2026-11-20T00:00:00Z", {"soql-6"}),
])
def test_soql_operators(soql_leads, where, expected):
    assert set(_keys(soql_leads, where)) == expected


@pytest.mark.slow
def test_soql_orders_limits_and_counts(soql_leads):
    org = soql_leads
    ordered = _keys(org, "Handoff_Id__c != null", "ORDER BY LastName ASC, Handoff_Score__c DESC NULLS LAST")
    assert ordered == ["soql-6", "soql-1", "soql-2", "soql-3", "soql-4", "soql-5"]
    assert _keys(org, "Handoff_Id__c != null", "ORDER BY Handoff_Score__c LIMIT 2") == ["soql-4", "soql-1"]  # nulls first
    assert _keys(org, "Handoff_Id__c != null", "ORDER BY Handoff_Score__c DESC NULLS LAST LIMIT 2 OFFSET 1") == \
        ["soql-5", "soql-3"]
    statuses = [r["Status"] for r in org.soql("SELECT Status FROM Lead ORDER BY Status DESC")]
    assert statuses == sorted(statuses, key=LEAD_STATUSES.index, reverse=True)  # picklist order, not alphabetical
    assert len(set(statuses)) > 2
    count = org.sf.query("SELECT COUNT() FROM Lead WHERE Company = 'Soql Co' AND Handoff_Score__c > 15")
    assert (count["totalSize"], count["records"]) == (4, [])
    lead = org.soql("SELECT Handoff_MQL_Date__c, CreatedDate, Owner.Name, Owner.Type FROM Lead "
                    "WHERE Handoff_Id__c = 'soql-3'")[0]
    assert lead["Handoff_MQL_Date__c"] == "2026-11-20T10:30:00.000+0000"
    assert SALESFORCE_DATETIME.match(lead["CreatedDate"])
    assert lead["Owner"]["attributes"]["type"] == "Name" and lead["Owner"]["Name"] == "Handoff Integration"


@pytest.mark.slow
def test_soql_errors_are_worded_as_a_real_org_words_them(shared):
    def error(query: str) -> dict:
        with pytest.raises(SalesforceMalformedRequest) as caught:
            shared.sf.query(query)
        return caught.value.content[0]

    malformed = error("SELECT Id FROM Lead WHERE")
    assert malformed["errorCode"] == "MALFORMED_QUERY" and malformed["message"].endswith("unexpected token: <EOF>")
    unknown = error("SELECT Id, Handoff_Colour__c FROM Lead")
    assert unknown["errorCode"] == "INVALID_FIELD"
    assert "ERROR at Row:1:Column:12\nNo such column 'Handoff_Colour__c' on entity 'Lead'." in unknown["message"]
    assert error("SELECT Id FROM Leads")["errorCode"] == "INVALID_TYPE"
    assert error("SELECT Id FROM Lead WHERE CreatedDate > '2026-11-01'")["errorCode"] == "INVALID_FIELD"
    assert error("SELECT Id FROM Lead WHERE LastName = 'a\\x'")["errorCode"] == "MALFORMED_QUERY"


@pytest.mark.slow
def test_format_soql_escaping_keeps_an_injected_value_a_value(shared):
    attack = "x' OR Name != '"
    escaped = format_soql("SELECT Id FROM Lead WHERE LastName = {}", attack)
    assert escaped == "SELECT Id FROM Lead WHERE LastName = 'x\\' OR Name != \\''"
    assert shared.sf.query(escaped)["totalSize"] == 0
    concatenated = f"SELECT Id FROM Lead WHERE LastName = '{attack}'"  # what the escaping prevents
    assert shared.sf.query(concatenated)["totalSize"] > 0


# ---------------------------------------------------------------- single records, describe, limits

@pytest.mark.slow
def test_crud_and_upsert_by_external_id(shared):
    sf, integration = shared.sf, shared.user_id("handoff.integration")
    created = sf.Lead.create({"FirstName": "Ada", "LastName": "Crud", "Company": "Crud Co", "NumberOfEmployees": 40,
                              "Handoff_Score__c": 72}, headers=NO_ASSIGN)
    assert created["success"] and created["errors"] == [] and created["id"].startswith("00Q") and len(created["id"]) == 18
    lead = sf.Lead.get(created["id"])
    assert (lead["Name"], lead["Status"], lead["IsConverted"], lead["Handoff_Score__c"]) == \
        ("Ada Crud", "Open - Not Contacted", False, 72.0)
    assert lead["CreatedById"] == lead["LastModifiedById"] == lead["OwnerId"] == integration
    assert SALESFORCE_DATETIME.match(lead["SystemModstamp"]) and lead["attributes"]["type"] == "Lead"
    narrow = shared.call("GET", f"sobjects/Lead/{created['id']}", params={"fields": "Name,Handoff_Score__c"}).json()
    assert set(narrow) == {"attributes", "Name", "Handoff_Score__c"}
    assert sf.Lead.update(created["id"], {"Title": "CTO"}, headers=NO_ASSIGN) == 204
    assert sf.Lead.get(created["id"])["Title"] == "CTO"
    assert sf.Lead.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.get(created["id"])
    query = format_soql("SELECT Id, IsDeleted FROM Lead WHERE Id = {}", created["id"])
    assert sf.query(query)["totalSize"] == 0 and sf.query_all(query, include_deleted=True)["records"][0]["IsDeleted"]

    first = sf.Lead.upsert("Handoff_Id__c/crud-7", {"LastName": "Upsert", "Company": "Crud Co"}, raw_response=True,
                           headers=NO_ASSIGN)
    assert first.status_code == 201 and first.json()["created"] is True
    again = sf.Lead.upsert("Handoff_Id__c/crud-7", {"Title": "VP"}, raw_response=True, headers=NO_ASSIGN)
    assert (again.status_code, again.json()) == (200, {"id": first.json()["id"], "success": True, "errors": [],
                                                      "created": False})
    assert sf.Lead.get_by_custom_id("Handoff_Id__c", "crud-7")["Title"] == "VP"
    only = shared.call("PATCH", "sobjects/Lead/Handoff_Id__c/crud-8", params={"updateOnly": "true"}, json={"Title": "x"})
    assert only.status_code == 404 and only.json()[0]["errorCode"] == "NOT_FOUND"


@pytest.mark.slow
@pytest.mark.parametrize("values, code, field", [
    ({"LastName": "X", "Company": "Y", "Handoff_Fit_Grade__c": "AB"}, "STRING_TOO_LONG", "Handoff_Fit_Grade__c"),
    ({"LastName": "X", "Company": "Y", "NumberOfEmployees": "many"}, "INVALID_TYPE_ON_FIELD_IN_RECORD", "NumberOfEmployees"),
    ({"LastName": "X", "Company": "Y", "Handoff_MQL_Date__c": "last Tuesday"}, "INVALID_TYPE_ON_FIELD_IN_RECORD",
     "Handoff_MQL_Date__c"),
    ({"LastName": "X"}, "REQUIRED_FIELD_MISSING", "Company"),
    ({"LastName": "X", "Company": "Y", "Status": "Hot"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Status"),
    ({"LastName": "X", "Company": "Y", "IsConverted": True}, "INVALID_FIELD_FOR_INSERT_UPDATE", "IsConverted"),
    ({"LastName": "X", "Company": "Y", "Handoff_Colour__c": "red"}, "INVALID_FIELD", "Handoff_Colour__c"),
])
def test_a_bad_value_is_refused_as_a_real_org_refuses_it(shared, values, code, field):
    single = shared.call("POST", "sobjects/Lead", json=values, headers=NO_ASSIGN)
    assert single.status_code == 400
    assert single.json()[0]["errorCode"] == code and single.json()[0]["fields"] == [field]
    [result] = shared.create([values])
    assert result["success"] is False and result["errors"][0]["statusCode"] == code


@pytest.mark.slow
def test_describe_lists_the_mapped_fields_and_limits_count_every_call(shared):
    fields = {f["name"]: f for f in shared.sf.Lead.describe()["fields"]}
    assert fields["Handoff_Id__c"]["externalId"] and fields["Handoff_Id__c"]["unique"]
    assert (fields["Handoff_Id__c"]["type"], fields["Handoff_Id__c"]["length"]) == ("string", 40)
    assert fields["Handoff_MQL_Date__c"]["type"] == "datetime" and fields["Handoff_Score__c"]["type"] == "double"
    assert not fields["IsConverted"]["updateable"] and fields["Company"]["nillable"] is False
    assert [v["value"] for v in fields["Status"]["picklistValues"]][1] == "Working - Contacted"
    assert {"Recycle_Reason__c", "Product_Line__c"} <= {f["name"] for f in shared.sf.Contact.describe()["fields"]}
    response = shared.call("GET", "limits")
    used, allowed = map(int, response.headers["Sforce-Limit-Info"].removeprefix("api-usage=").split("/"))
    assert response.json()["DailyApiRequests"] == {"Max": allowed, "Remaining": allowed - used}


# ---------------------------------------------------------------- collections and bulk

@pytest.mark.slow
def test_composite_reports_each_record_in_request_order(shared):
    results = shared.create([{"LastName": "One", "Company": "Comp Co", "Handoff_Id__c": "comp-1"},
                             {"LastName": "Two", "Handoff_Id__c": "comp-2"},
                             {"LastName": "Three", "Company": "Comp Co", "Handoff_Id__c": "comp-3"}])
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1] == {"success": False, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "fields": ["Company"],
                                                        "message": "Required fields are missing: [Company]"}]}
    updates = [{"attributes": {"type": "Lead"}, "Id": results[0]["id"], "Title": "Updated"},
               {"attributes": {"type": "Lead"}, "Id": results[2]["id"], "Handoff_Score__c": "lots"}]
    updated = shared.call("PATCH", "composite/sobjects", json={"records": updates}, headers=NO_ASSIGN).json()
    assert updated[0] == {"id": results[0]["id"], "success": True, "errors": []}
    assert updated[1]["id"] == results[2]["id"] and updated[1]["errors"][0]["statusCode"] == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    deleted = shared.call("DELETE", "composite/sobjects", params={"ids": f"{results[0]['id']},{results[0]['id']}"}).json()
    assert deleted[0] == {"id": results[0]["id"], "success": True, "errors": []}
    assert deleted[1]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"


@pytest.mark.slow
def test_all_or_none_rolls_the_whole_call_back(shared):
    results = shared.create([{"LastName": "Kept", "Company": "Aon Co", "Handoff_Id__c": "aon-1"},
                             {"LastName": "Broken", "Company": "Aon Co", "Handoff_Id__c": "aon-2", "Handoff_Fit_Grade__c": "ZZ"},
                             {"LastName": "Kept", "Company": "Aon Co", "Handoff_Id__c": "aon-3"}], all_or_none=True)
    assert [r["success"] for r in results] == [False, False, False]
    assert results[1]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert {results[0]["errors"][0]["statusCode"], results[2]["errors"][0]["statusCode"]} == {"ALL_OR_NONE_OPERATION_ROLLED_BACK"}
    assert shared.soql("SELECT Id FROM Lead WHERE Company = 'Aon Co'", deleted=True) == []
    kept = shared.create([{"LastName": "Kept", "Company": "Aon Co", "Handoff_Id__c": "aon-4"}])[0]["id"]
    updates = [{"attributes": {"type": "Lead"}, "Id": kept, "Title": "Changed"},
               {"attributes": {"type": "Lead"}, "Id": kept, "LastName": None}]
    body = shared.call("PATCH", "composite/sobjects", json={"allOrNone": True, "records": updates}, headers=NO_ASSIGN).json()
    assert body[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert body[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert shared.sf.Lead.get(kept)["Title"] is None


@pytest.mark.slow
def test_bulk_insert_update_and_upsert_write_salesforces_result_files(shared):
    info, job = shared.bulk("insert", [["LastName", "Company", "Email", "Handoff_Id__c"],
                                       ["Bulk", "Bulk Co", "one@bulk.example", "bulk-1"],
                                       ["", "Bulk Co", "two@bulk.example", "bulk-2"],
                                       ["Bulk", "Bulk Co", "three@bulk.example", "bulk-3"]])
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("JobComplete", 3, 1)
    assert (info["object"], info["operation"], info["jobType"], info["id"][:3]) == ("Lead", "insert", "V2Ingest", "750")
    ok = shared.results(job, "successfulResults")
    assert [r["Handoff_Id__c"] for r in ok] == ["bulk-1", "bulk-3"] and {r["sf__Created"] for r in ok} == {"true"}
    [failed] = shared.results(job, "failedResults")
    assert failed["sf__Error"] == "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
    assert failed["sf__Id"] == "" and failed["Handoff_Id__c"] == "bulk-2"

    info, job = shared.bulk("update", [["Id", "Title"], [ok[0]["sf__Id"], "Head of Bulk"], ["00Q5e000000zzzzEAA", "x"]])
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (2, 1)
    assert shared.results(job, "successfulResults")[0]["sf__Created"] == "false"
    assert shared.sf.Lead.get(ok[0]["sf__Id"])["Title"] == "Head of Bulk"

    info, job = shared.bulk("upsert", [["Handoff_Id__c", "LastName", "Company"], ["bulk-3", "Renamed", "Bulk Co"],
                                       ["bulk-4", "New", "Bulk Co"]], external="Handoff_Id__c")
    created = {r["Handoff_Id__c"]: r["sf__Created"] for r in shared.results(job, "successfulResults")}
    assert created == {"bulk-3": "false", "bulk-4": "true"}

    info, job = shared.bulk("insert", [["LastName", "Company", "Shoe_Size__c"], ["A", "B", "9"]])
    assert info["state"] == "Failed" and info["errorMessage"] == "InvalidBatch : Field name not found : Shoe_Size__c"
    assert shared.results(job, "unprocessedrecords") == [{"LastName": "A", "Company": "B", "Shoe_Size__c": "9"}]


# ---------------------------------------------------------------- the org's rules

@pytest.mark.slow
def test_assignment_rule_moves_the_owner_unless_the_call_says_false(shared):
    oliver, integration = shared.user_id("oliver.hughes"), shared.user_id("handoff.integration")
    assigned, queued = shared.create([{"LastName": "Gb", "Company": "Rule Co", "Country": "GB"},
                                      {"LastName": "Br", "Company": "Rule Co", "Country": "BR"}], headers={})
    owners = {r["Id"]: r for r in shared.soql("SELECT Id, OwnerId, Owner.Type, Owner.Name FROM Lead WHERE Company = 'Rule Co'")}
    assert owners[assigned["id"]]["OwnerId"] == oliver and owners[queued["id"]]["Owner"]["Type"] == "Queue"
    lead = shared.sf.Lead.create({"LastName": "Manual", "Company": "Rule Co", "Country": "GB"}, headers=NO_ASSIGN)
    assert shared.sf.Lead.get(lead["id"])["OwnerId"] == integration
    jordan = shared.user_id("jordan.blake")
    shared.sf.Lead.update(lead["id"], {"OwnerId": jordan}, headers=NO_ASSIGN)
    assert shared.sf.Lead.get(lead["id"])["OwnerId"] == jordan
    shared.sf.Lead.update(lead["id"], {"Title": "Anything"})  # no header: the rule runs on update too
    assert shared.sf.Lead.get(lead["id"])["OwnerId"] == oliver


@pytest.mark.slow
def test_duplicate_rule_names_the_matching_lead_or_contact(shared):
    lead = shared.soql("SELECT Id, Email FROM Lead WHERE Email != null AND IsConverted = false ORDER BY Id LIMIT 1")[0]
    response = shared.call("POST", "sobjects/Lead", json={"LastName": "Again", "Company": "Dup Co",
                                                          "Email": lead["Email"].upper()}, headers=NO_ASSIGN)
    assert response.status_code == 400
    [error] = response.json()
    assert (error["errorCode"], error["message"]) == ("DUPLICATES_DETECTED", "Use one of these records?")
    result = error["duplicateResult"]
    assert result["allowSave"] is False and result["duplicateRuleEntityType"] == "Lead"
    matched = [m["record"]["Id"] for r in result["matchResults"] if r["entityType"] == "Lead" for m in r["matchRecords"]]
    assert lead["Id"] in matched
    contact = shared.soql("SELECT Id, Email FROM Contact WHERE Email != null ORDER BY Id LIMIT 1")[0]
    [result] = shared.create([{"LastName": "Again", "Company": "Dup Co", "Email": contact["Email"]}])
    error = result["errors"][0]
    assert error["statusCode"] == "DUPLICATES_DETECTED"
    assert error["duplicateResult"]["matchResults"][0]["matchRecords"][0]["record"]["Id"] == contact["Id"]


# ---------------------------------------------------------------- faults

def _flip(org: Org, **switches) -> None:
    org.control("/_sandbox/faults", switches)


@pytest.mark.slow
def test_expired_session_switch_makes_simple_salesforce_sign_in_again(start):
    org = start()
    _flip(org, expire_token_every=3)
    for _ in range(6):
        assert org.sf.query("SELECT COUNT() FROM Group")["totalSize"] == 1
    assert org.faults.fired("expire_token") >= 2
    assert org.calls()["calls"]["token"] == 1 + org.faults.fired("expire_token")


@pytest.mark.slow
def test_a_spent_daily_allowance_is_request_limit_exceeded(start):
    org = start()
    _flip(org, daily_api_limit=3)
    statuses = [org.call("GET", "limits") for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 403]
    assert statuses[2].headers["Sforce-Limit-Info"] == "api-usage=3/3"
    assert statuses[3].json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert org.faults.fired("daily_api_limit") == 1
    org.control("/_sandbox/clock", {"advance_hours": 24})  # a new day, a new allowance
    assert org.call("GET", "limits").status_code == 200


@pytest.mark.slow
def test_per_record_faults_fail_single_records_inside_a_successful_call(start):
    org = start()
    _flip(org, unable_to_lock_row_every=3, validation_error_every=4)
    results = org.create([{"LastName": f"F{i}", "Company": "Fault Co"} for i in range(8)])
    codes = [r["errors"][0]["statusCode"] if not r["success"] else None for r in results]
    assert codes == [None, None, "UNABLE_TO_LOCK_ROW", None, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "UNABLE_TO_LOCK_ROW",
                     None, None]
    assert org.faults.fired("unable_to_lock_row") == 2 and org.faults.fired("validation_error") == 1
    assert len(org.soql("SELECT Id FROM Lead WHERE Company = 'Fault Co'")) == 5


@pytest.mark.slow
def test_server_errors_rate_limits_and_slow_responses(start):
    org = start()
    _flip(org, server_error_every=2)
    statuses = [org.call("GET", "limits") for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 500, 200, 503]
    assert statuses[1].json()[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    assert statuses[3].json() == [{"message": "Server is unavailable", "errorCode": "SERVER_UNAVAILABLE"}]
    assert org.faults.fired("server_error") == 2
    _flip(org, server_error_every=0, rate_limit_every=1)
    limited = org.call("GET", "limits")
    assert limited.status_code == 403 and limited.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert org.faults.fired("rate_limit") == 1
    _flip(org, rate_limit_every=0, slow_ms=300)
    began = time.monotonic()
    assert org.call("GET", "limits").status_code == 200
    assert time.monotonic() - began >= 0.3


@pytest.mark.slow
def test_a_held_response_outlasts_the_clients_timeout(start):
    org = start(timeout_hold_seconds=1.0)
    _flip(org, timeout_every=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        org.call("GET", "limits", timeout=0.3)
    _flip(org, timeout_every=0)
    assert org.faults.fired("timeout") == 1
    assert org.call("GET", "limits").status_code == 200


@pytest.mark.slow
def test_a_committed_write_whose_response_never_arrives(start):
    org = start()
    _flip(org, drop_after_commit_every=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        org.call("POST", "sobjects/Lead", json={"LastName": "Dropped", "Company": "Drop Co"}, headers=NO_ASSIGN)
    _flip(org, drop_after_commit_every=0)
    assert org.faults.fired("drop_after_commit") == 1
    assert [r["LastName"] for r in org.soql("SELECT LastName FROM Lead WHERE Company = 'Drop Co'")] == ["Dropped"]


# ---------------------------------------------------------------- the call log, the stack

@pytest.mark.slow
def test_call_log_counts_calls_by_kind(start):
    org = start()
    requests.delete(org.url + "/_sandbox/salesforce/calls", timeout=10)
    org.bulk("insert", [["LastName", "Company"]] + [["Log", "Log Co"]] * 250)
    lead = org.sf.Lead.create({"LastName": "Log", "Company": "Log Co"})["id"]
    org.sf.Lead.get(lead)
    org.sf.Lead.update(lead, {"Title": "x"})
    org.sf.Lead.upsert("Handoff_Id__c/log-1", {"LastName": "Log", "Company": "Log Co"})
    org.create([{"LastName": "Log", "Company": "Log Co"}])
    page = org.call("GET", "query", params={"q": "SELECT Id FROM Lead"}, headers={"Sforce-Query-Options": "batchSize=200"})
    org.sf.query_more(page.json()["nextRecordsUrl"], identifier_is_url=True)
    org.sf.query_all("SELECT Id FROM Lead LIMIT 10")
    org.sf.Lead.delete(lead)
    org.sf.limits()
    log = org.calls()
    calls = log["calls"]
    assert {k: calls[k] for k in ("sobject_create", "sobject_get", "sobject_update", "sobject_upsert", "sobject_delete",
                                  "composite_create", "limits", "bulk_create_job", "bulk_upload", "bulk_set_state")} == \
        dict.fromkeys(("sobject_create", "sobject_get", "sobject_update", "sobject_upsert", "sobject_delete",
                       "composite_create", "limits", "bulk_create_job", "bulk_upload", "bulk_set_state"), 1)
    assert calls["query"] == 2 and calls["query_more"] == 1 and calls["bulk_poll"] >= 1
    assert log["total"] == sum(calls.values()) and log["writes"] == 8
    assert log["records"]["created"] >= 3 and log["records"]["updated"] == 1 and log["records"]["deleted"] == 1
    requests.delete(org.url + "/_sandbox/salesforce/calls", timeout=10)
    assert org.calls()["total"] == 0


@pytest.mark.slow
def test_stack_serves_the_crm_only_when_asked(sandbox_factory):
    box = sandbox_factory(SPEC, tools=("mautic",), crm=True)
    assert set(box.servers) == {"mautic", "salesforce"} and isinstance(box.faults["salesforce"], SalesforceFaults)
    assert box.env["HANDOFF_SALESFORCE_LOGIN_URL"] == box.url("salesforce")
    assert {"HANDOFF_SALESFORCE_ENABLED", "HANDOFF_SALESFORCE_CLIENT_ID", "HANDOFF_SALESFORCE_CLIENT_SECRET"} <= set(box.env)
    assert "BEGIN PRIVATE KEY" in box.credentials["salesforce"]["private_key_pem"]
    assert "salesforce" not in sandbox_factory(SPEC, tools=("mautic",)).servers


# ---------------------------------------------------------------- people at work

def _a_month_of_work(org: Org) -> dict:
    org.control("/_sandbox/salesforce/rates", {"convert": 0.5})
    countries = ("US", "GB", "DE", "NL", "FR", "CA", "BR")
    created = org.create([{"LastName": f"Work{i}", "Company": f"Work Co {i}", "Country": countries[i % 7],
                           "Handoff_Id__c": f"work-{i}", "Product_Line__c": "Scoring"} for i in range(42)], headers={})
    assert all(r["success"] for r in created)
    org.control("/_sandbox/clock", {"advance_hours": 30 * 24})
    return {
        "leads": org.soql("SELECT Id, Status, OwnerId, LastModifiedById, SystemModstamp, IsDeleted, MasterRecordId, "
                          "IsConverted, ConvertedContactId, ConvertedOpportunityId, Recycle_Reason__c FROM Lead "
                          "ORDER BY Id", deleted=True),
        "tasks": org.soql("SELECT Id, WhoId, OwnerId, CreatedById, Subject, TaskSubtype, Status, CreatedDate FROM Task "
                          "ORDER BY Id"),
        "events": org.soql("SELECT Id, WhoId, OwnerId, StartDateTime FROM Event ORDER BY Id"),
        "opportunities": org.soql("SELECT Id, StageName, IsClosed, IsWon, LastModifiedById FROM Opportunity ORDER BY Id"),
        "created": {r["id"] for r in created},
    }


@pytest.mark.slow
def test_people_work_the_leads_the_same_way_in_every_fresh_org(start):
    org = start()
    first, second = _a_month_of_work(org), _a_month_of_work(start())
    assert first == second
    mine = [r for r in first["leads"] if r["Id"] in first["created"]]
    reps = {r["OwnerId"] for r in first["tasks"]}
    assert org.user_id("handoff.integration") not in reps
    assert any(r["Status"] == "Working - Contacted" and r["LastModifiedById"] in reps for r in mine)
    converted = [r for r in mine if r["IsConverted"]]
    assert converted and all(r["Status"] == "Closed - Converted" and r["ConvertedContactId"] for r in converted)
    assert any(t["WhoId"] == converted[0]["ConvertedContactId"] for t in first["tasks"])  # activities moved on conversion
    assert any(r["Status"] == "Nurturing" and r["Recycle_Reason__c"] for r in first["leads"])
    assert any(o["IsClosed"] for o in first["opportunities"])
    assert any(t["TaskSubtype"] == "Call" for t in first["tasks"]) and any(t["TaskSubtype"] == "Email" for t in first["tasks"])
    assert all(t["CreatedById"] == t["OwnerId"] for t in first["tasks"])
    assert any(r["MasterRecordId"] and r["IsDeleted"] for r in first["leads"])


# ---------------------------------------------------------------- the composite resource

def _sub(method: str, path: str, ref: str, **extra) -> dict:
    return {"method": method, "url": f"/services/data/v59.0/{path}", "referenceId": ref, **extra}


def _composite(org: Org, subrequests: list[dict], all_or_none: bool = False) -> list[dict]:
    response = org.call("POST", "composite", json={"allOrNone": all_or_none, "compositeRequest": subrequests})
    assert response.status_code == 200, response.text
    return response.json()["compositeResponse"]


@pytest.mark.slow
def test_composite_runs_its_subrequests_in_order_as_one_api_call_with_references(shared):
    def used() -> int:
        return int(shared.call("GET", "limits").headers["Sforce-Limit-Info"].split("=")[1].split("/")[0])

    before, writes = used(), shared.calls()["writes"]
    users = "queryAll?" + urlencode({"q": "SELECT Id, Name FROM User ORDER BY Id"})
    answers = _composite(shared, [
        _sub("POST", "sobjects/Lead", "newLead", body={"LastName": "Composite", "Company": "Comp Res Co",
                                                       "Country": "GB", "Handoff_Id__c": "compres-1"},
             httpHeaders=NO_ASSIGN),
        _sub("GET", "sobjects/Lead/@{newLead.id}?fields=Name,Company,OwnerId", "readBack"),
        _sub("GET", users, "users", httpHeaders={"Sforce-Query-Options": "batchSize=200"}),
        _sub("PATCH", "sobjects/Lead/@{newLead.id}", "retitle", body={"Title": "@{readBack.Company}"},
             httpHeaders=NO_ASSIGN),
    ])
    assert used() == before + 2  # the composite call and this limits call
    assert [a["referenceId"] for a in answers] == ["newLead", "readBack", "users", "retitle"]
    assert [a["httpStatusCode"] for a in answers] == [201, 200, 200, 204]
    assert set(answers[0]) == {"body", "httpHeaders", "httpStatusCode", "referenceId"}
    lead_id = answers[0]["body"]["id"]
    assert answers[0]["body"] == {"id": lead_id, "success": True, "errors": []}
    assert answers[1]["body"]["Name"] == "Composite"
    assert answers[1]["body"]["OwnerId"] == shared.user_id("handoff.integration")  # the subrequest's header held
    assert (answers[2]["body"]["totalSize"], answers[2]["body"]["done"]) == (12, True)
    assert answers[3]["body"] is None and shared.sf.Lead.get(lead_id)["Title"] == "Comp Res Co"
    assert shared.calls()["writes"] == writes + 1

    reads = _composite(shared, [_sub("GET", users, "u1"), _sub("GET", f"sobjects/Lead/{lead_id}", "l1")])
    assert [a["httpStatusCode"] for a in reads] == [200, 200]
    assert shared.calls()["writes"] == writes + 1  # a composite call that only reads is no write


@pytest.mark.slow
def test_composite_all_or_none_rolls_back_and_halts_the_others(shared):
    answers = _composite(shared, [
        _sub("POST", "sobjects/Lead", "kept", body={"LastName": "Aon", "Company": "Comp Res Co",
                                                    "Handoff_Id__c": "compres-2"}),
        _sub("PATCH", "composite/sobjects", "collection", body={"records": [
            {"attributes": {"type": "Lead"}, "Id": "@{kept.id}", "Title": "Changed"}]}),
        _sub("POST", "sobjects/Lead", "broken", body={"LastName": "Aon"}),
        _sub("GET", "sobjects/Lead/@{kept.id}", "after"),
    ], all_or_none=True)
    assert [a["httpStatusCode"] for a in answers] == [400, 400, 400, 400]
    assert answers[2]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    halted = [{"errorCode": "PROCESSING_HALTED",
               "message": "The transaction was rolled back since another operation in the same transaction failed."}]
    assert answers[0]["body"] == answers[1]["body"] == answers[3]["body"] == halted
    assert shared.soql("SELECT Id FROM Lead WHERE Handoff_Id__c = 'compres-2'", deleted=True) == []

    # without allOrNone the others run; one that names a failed answer does not
    answers = _composite(shared, [
        _sub("POST", "sobjects/Lead", "broken", body={"LastName": "Aon"}),
        _sub("GET", "sobjects/Lead/@{broken.id}", "dependent"),
        _sub("POST", "sobjects/Lead", "fine", body={"LastName": "Aon", "Company": "Comp Res Co",
                                                    "Handoff_Id__c": "compres-3"}),
    ])
    assert [a["httpStatusCode"] for a in answers] == [400, 400, 201]
    assert answers[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert len(shared.soql("SELECT Id FROM Lead WHERE Handoff_Id__c = 'compres-3'")) == 1


@pytest.mark.slow
def test_composite_takes_25_subrequests_of_which_5_queries(shared):
    def refused(subrequests: list[dict]) -> dict:
        [answer] = _composite(shared, subrequests)
        assert (answer["httpStatusCode"], answer["referenceId"], answer["httpHeaders"]) == (400, None, {})
        return answer["body"][0]

    describe = [_sub("GET", "sobjects/Lead/describe", f"d{i}") for i in range(26)]
    assert refused(describe) == {"errorCode": "LIMIT_EXCEEDED",
                                 "message": "The request can’t contain more than 25 operations."}
    assert len(_composite(shared, describe[:25])) == 25
    queries = [_sub("GET", "query?q=SELECT+Id+FROM+Group", f"q{i}") for i in range(6)]
    assert refused(queries)["errorCode"] == "LIMIT_EXCEEDED"
    assert [a["body"]["totalSize"] for a in _composite(shared, queries[:5])] == [1] * 5
    bad = shared.call("POST", "composite", json={"compositeRequest": [
        _sub("GET", "limits", "a", httpHeaders={"Authorization": "Bearer x"})]})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_INPUT"
