"""Response framings through the whole proxy, against a stand-in worker (no R)."""

from tests.helpers import ROOT, config_for, run_faucet

STANDIN = str(ROOT / "tests" / "standin" / "Rscript")


async def test_chunked_close_delimited_and_informational_responses():
    async with run_faucet(config_for(workers=1, rscript=STANDIN)) as faucet, \
            faucet.client() as client:
        for _ in range(2):  # the second round reuses the pooled connection
            chunked = await client.get("/chunked")
            assert chunked.status_code == 200 and chunked.text == "chunk-framed"
            # of unknown length, so relayed as it comes: chunked again to the client
            assert chunked.headers.get("transfer-encoding") == "chunked"
            assert "content-length" not in chunked.headers
            informational = await client.get("/continue")
            assert informational.status_code == 200 and informational.text == "worker 1"
        closed = await client.get("/close")
        assert closed.text == "until-close 1"
        after = await client.get("/plain")
        assert after.status_code == 200 and after.text == "worker 1"
        head = await client.head("/plain")
        assert head.status_code == 200 and head.content == b""
        assert len(head.headers.get_list("date")) == 1
