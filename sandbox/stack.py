"""Start all stand-ins over one synthetic world and say how to point Handoff's sources at them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from sandbox.faults import RequestFaults
from sandbox.server import BackgroundServer
from sandbox.webhooks import WebhookControl, WebhookSender
from sandbox.world import TOOLS, World, WorldSpec, generate

CRM = "salesforce"
WEBHOOK_TOOLS = ("mautic", "hubspot")


@dataclass
class Sandbox:
    world: World
    servers: dict[str, BackgroundServer]
    faults: dict[str, RequestFaults]
    credentials: dict[str, dict[str, str]]
    env: dict[str, str] = field(default_factory=dict)
    webhooks: dict[str, WebhookControl] = field(default_factory=dict)

    def url(self, tool: str) -> str:
        return self.servers[tool].url

    def stop(self) -> None:
        for control in self.webhooks.values():
            control.stop()
        for server in self.servers.values():
            server.stop()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def tool_module(tool: str):
    return importlib.import_module(f"sandbox.{tool}")


def start_sandbox(
    spec: WorldSpec | None = None,
    *,
    world: World | None = None,
    faults: dict[str, RequestFaults] | None = None,
    ports: dict[str, int] | None = None,
    tools: tuple[str, ...] = TOOLS,
    host: str = "127.0.0.1",
    crm: bool = False,
    webhooks_to: str | None = None,
) -> Sandbox:
    """Serve each tool's stand-in on its own port (0 = any free port). `env` holds the variables that
    config/sources.yaml reads, so `os.environ.update(sandbox.env)` points the product at the stand-ins (webhook
    secrets included). With `crm`, the Salesforce stand-in serves the same world too (its faults are
    SalesforceFaults). With `webhooks_to` (e.g. http://127.0.0.1:8765/webhooks), the Mautic and HubSpot stand-ins
    post their webhooks to <webhooks_to>/<tool>, signed as the tool signs them."""
    world = world or generate(spec or WorldSpec())
    given = faults or {}
    faults = {tool: given.get(tool) or RequestFaults() for tool in tools}
    if crm:
        tools = (*tools, CRM)
        faults[CRM] = given.get(CRM) or tool_module(CRM).SalesforceFaults()
    servers: dict[str, BackgroundServer] = {}
    credentials: dict[str, dict[str, str]] = {}
    env: dict[str, str] = {}
    controls: dict[str, WebhookControl] = {}
    try:
        for tool in tools:
            module = tool_module(tool)
            credentials[tool] = module.new_credentials()
            extra = {}
            if tool in WEBHOOK_TOOLS:
                extra["webhooks"] = _sender(module, tool, webhooks_to, credentials[tool], faults[tool])
            app = module.create_app(world, faults[tool], credentials[tool], **extra)
            if tool in WEBHOOK_TOOLS:
                controls[tool] = app.state.webhooks
            servers[tool] = BackgroundServer(app, host=host, port=(ports or {}).get(tool, 0),
                                             date_header=tool != CRM).start()
            env.update(module.source_env(servers[tool].url, credentials[tool]))
    except BaseException:
        for control in controls.values():
            control.stop()
        for server in servers.values():
            server.stop()
        raise
    return Sandbox(world=world, servers=servers, faults=faults, credentials=credentials, env=env, webhooks=controls)


def _sender(module, tool: str, webhooks_to: str | None, credentials: dict[str, str],
            faults: RequestFaults) -> WebhookSender | None:
    if not webhooks_to:
        return None
    secret = credentials["webhook_secret" if tool == "mautic" else "client_secret"]
    return WebhookSender(f"{webhooks_to.rstrip('/')}/{tool}", module.webhook_signature, secret, faults,
                         module.WEBHOOK_RETRIES)
