"""Control routes every stand-in serves under /_sandbox: read and flip fault switches, move the clock."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.faults import RequestFaults
from sandbox.world import World


def control_routes(world: World, faults: RequestFaults) -> list[Route]:
    async def state(_: Request) -> JSONResponse:
        return JSONResponse({"faults": faults.as_dict(), "clock": world.now.isoformat()})

    async def set_faults(request: Request) -> JSONResponse:
        try:
            faults.update(**(await request.json()))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"faults": faults.as_dict()})

    async def clock(request: Request) -> JSONResponse:
        body = await request.json()
        world.advance(float(body.get("advance_hours", 0)))
        return JSONResponse({"clock": world.now.isoformat()})

    return [
        Route("/_sandbox/state", state, methods=["GET"]),
        Route("/_sandbox/faults", set_faults, methods=["POST"]),
        Route("/_sandbox/clock", clock, methods=["POST"]),
    ]


async def delay(faults: RequestFaults) -> None:
    """The slow-response switch: every response waits this long."""
    if faults.slow_ms > 0:
        await asyncio.sleep(faults.slow_ms / 1000)
