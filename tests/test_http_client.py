"""The shared HTTP client: retries that honour the service's own signals, re-authentication, no leaked secrets."""

import logging

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.http import Backoff, HttpClient, PermanentError, TransientError, retry_after_seconds
from sandbox.server import BackgroundServer


class Script:
    """Answers requests from a list of (status, headers, body); repeats the last one."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []

    async def __call__(self, request):
        self.requests.append(dict(request.headers))
        status, headers, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return JSONResponse(body, status_code=status, headers=headers)


@pytest.fixture
def serve():
    servers = []

    def start(script):
        async def endpoint(request):
            return await script(request)

        server = BackgroundServer(Starlette(routes=[Route("/thing", endpoint, methods=["GET", "POST"])])).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


def client(url, sleeps, **kwargs):
    return HttpClient("svc", url, backoff=Backoff(base=0.01, cap=0.05, max_attempts=4), sleep=sleeps.append, **kwargs)


def test_429_waits_as_long_as_retry_after_asks_then_succeeds(serve):
    url = serve(Script((429, {"Retry-After": "7"}, {"error": "slow down"}), (200, {}, {"ok": True})))
    sleeps = []
    assert client(url, sleeps).get_json("/thing") == {"ok": True}
    assert sleeps == [7.0]


def test_server_errors_back_off_and_give_up_with_a_transient_error(serve):
    url = serve(Script((503, {}, {"error": "down"})))
    sleeps = []
    with pytest.raises(TransientError, match="server error 503.*gave up after 4 attempts"):
        client(url, sleeps).get_json("/thing")
    assert len(sleeps) == 3 and all(0 <= s <= 0.05 for s in sleeps)


def test_an_expired_token_is_renewed_once_and_the_request_repeated(serve):
    script = Script((401, {}, {"error": "expired"}), (200, {}, {"ok": True}))
    url = serve(script)
    tokens = iter(["old-token", "new-token"])
    state = {"token": next(tokens)}
    http = client(url, [], authorize=lambda h: h.update(Authorization=f"Bearer {state['token']}"),
                  reauthorize=lambda: state.update(token=next(tokens)))
    assert http.get_json("/thing") == {"ok": True}
    assert [r["authorization"] for r in script.requests] == ["Bearer old-token", "Bearer new-token"]


def test_a_client_error_is_permanent_and_its_message_carries_no_credentials(serve, caplog):
    url = serve(Script((403, {}, {"error": "forbidden"})))
    http = client(url, [], authorize=lambda h: h.update(Authorization="Bearer top-secret-token"))
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentError) as error:
        http.request("GET", "/thing", params={"client_secret": "hush-hush"})
    assert "HTTP 403" in str(error.value) and "/thing" in str(error.value)
    for text in (str(error.value), caplog.text):
        assert "top-secret-token" not in text and "hush-hush" not in text


def test_an_envelope_check_can_turn_a_200_into_a_retry(serve):
    url = serve(Script((200, {}, {"success": False, "code": "606"}), (200, {}, {"success": True})))

    def check(response):
        if not response.json()["success"]:
            raise TransientError("rate limit 606", retry_after=2)

    sleeps = []
    assert client(url, sleeps).get_json("/thing", check=check) == {"success": True}
    assert sleeps == [2]


def test_connection_refused_is_transient():
    sleeps = []
    with pytest.raises(TransientError, match="ConnectionError"):
        client("http://127.0.0.1:9", sleeps).get_json("/thing")


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
