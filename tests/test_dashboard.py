"""/__faucet__/dashboard's JSON view, in-process (the page in a browser:
tests/e2e/test_dashboard.py)."""

from __future__ import annotations

from faucet.proxy.insight import dashboard_page
from tests.helpers import STANDIN, config_for, run_faucet


def test_the_page_carries_uplot_inside_it():
    page = dashboard_page()
    assert b"/*UPLOT_JS*/" not in page and b"/*UPLOT_CSS*/" not in page
    assert b"https://github.com/leeoniya/uPlot" in page and b".uplot" in page


async def test_the_json_view_shows_workers_their_events_and_the_tiles():
    async with run_faucet(config_for(workers=2, rscript=str(STANDIN))) as faucet, \
            faucet.client() as client:
        assert (await client.get("/hello")).status_code == 200
        page = await client.get("/__faucet__/dashboard")
        view = (await client.get("/__faucet__/dashboard.json")).json()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert view["step"] == 5 and isinstance(view["history"], list)
    tiles = view["tiles"]
    assert (tiles["online"], tiles["workers"], tiles["queued"]) == (2, 2, 0)
    assert tiles["sink"] == "ok"
    assert [w["worker_id"] for w in view["workers"]] == [1, 2]
    assert all(w["state"] == "online" and w["pid"] and w["uptime"] >= 0
               for w in view["workers"])
    assert sum(w["served"] for w in view["workers"]) == 1
    changes = {(e["worker"], e["event"]) for e in view["events"]}
    assert {(1, "spawned"), (1, "online"), (2, "spawned"), (2, "online")} <= changes




