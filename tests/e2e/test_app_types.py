"""The app kinds beyond R: fast-api (``uv run fastapi run``) and quarto-shiny (``quarto
serve``, played by a stand-in script since Quarto is not packaged here), plus ``faucet uv``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from faucet.pool.sticky import cookie_for_index
from tests.helpers import FASTAPI, config_for, run_faucet

QUARTO_STAND_IN = f"""#!{sys.executable}
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({{"argv": sys.argv, "cwd": os.getcwd(),
                           "worker": os.environ.get("FAUCET_WORKER_ID")}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

port = int(sys.argv[sys.argv.index("--port") + 1])
HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


async def test_fast_api_workers_answer_through_faucet(fastapi_env, monkeypatch):
    monkeypatch.setenv("UV_PROJECT_ENVIRONMENT", fastapi_env["UV_PROJECT_ENVIRONMENT"])
    config = config_for(type="fast-api", dir=str(FASTAPI), uv=fastapi_env["FAUCET_UV"],
                        strategy="round-robin")
    async with run_faucet(config) as faucet, faucet.client() as client:
        echo = await client.get("/echo", params={"msg": "hé"})
        assert echo.status_code == 200 and echo.json() == {"msg": "hé"}
        seen = [(await client.get("/")).json() for _ in range(4)]
    assert sorted(answer["worker"] for answer in seen) == ["1", "1", "2", "2"]
    assert {answer["path"] for answer in seen} == {"/"}


async def test_quarto_shiny_command_cwd_and_worker_id(tmp_path: Path):
    quarto = tmp_path / "bin" / "quarto"
    quarto.parent.mkdir()
    quarto.write_text(QUARTO_STAND_IN)
    quarto.chmod(0o755)
    app = tmp_path / "app"
    app.mkdir()
    (app / "doc.qmd").write_text("")
    config = config_for(type="quarto-shiny", dir=str(app), qmd="doc.qmd", quarto=str(quarto))
    async with run_faucet(config) as faucet:
        answers = []
        for index in range(2):  # quarto-shiny is sticky: one cookie for each worker
            cookie = str(cookie_for_index(index, 2))
            async with faucet.client(cookies={"FAUCET_LB_COOKIE": cookie}) as client:
                answers.append((await client.get("/")).json())
        ports = {str(b.worker_id): b.port for b in faucet.backends()}
    assert sorted(answer["worker"] for answer in answers) == ["1", "2"]
    for answer in answers:
        port = str(ports[answer["worker"]])
        assert answer["argv"] == [str(quarto), "serve", "--port", port, "--host", "127.0.0.1",
                                  "doc.qmd"]
        assert answer["cwd"] == str(app)


DOCS_UNDER_PREFIX = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from main import app

async def get(path, headers):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    sent = []
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        sent.append(message)
    await app(scope, receive, send)
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")

mounted = asyncio.run(get("/docs", [(b"x-forwarded-prefix", b"/py")])).decode()
alone = asyncio.run(get("/docs", [])).decode()
openapi = json.loads(asyncio.run(get("/openapi.json", [(b"x-forwarded-prefix", b"/py")])))
print(json.dumps({"mounted": "'/py/openapi.json'" in mounted,
                  "alone": "'/openapi.json'" in alone, "paths": sorted(openapi["paths"])}))
"""


def test_fastapi_example_docs_work_under_the_routers_prefix(fastapi_env):
    """docs/app-types.md: under /py/, /docs must load /py/openapi.json (it loaded
    /openapi.json, which faucet's router does not send to the app)."""
    python = Path(fastapi_env["UV_PROJECT_ENVIRONMENT"]) / "bin" / "python"
    result = subprocess.run([str(python), "-c", DOCS_UNDER_PREFIX, str(FASTAPI)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"mounted": True, "alone": True,
                                         "paths": ["/", "/echo"]}
