"""The README's "Scaled out" commands, run exactly as written, against a real PostgreSQL and Milvus.

Marked ``scaleout`` (README, "Tests"). The block between
``<!-- scaled-out-begin -->`` and ``<!-- scaled-out-end -->`` is extracted
from README.md and run by bash, with the placeholders it names set to this
test's own services and folders: ``PG_URL`` (a fresh database on the
fixture's PostgreSQL), ``MILVUS_URI`` (the fixture's Milvus Lite server),
``DB``, ``CATALOG`` and ``NEGATIVES`` (seeded synthetic melodies), two free
loopback ``PORTS`` and an ``ADMIN_TOKEN``. The block starts its workers in
the background; they run in the process group of that bash, which the test
ends (SIGTERM, then SIGKILL) whatever happens.

Checked: the block succeeds; the database was enrolled on Milvus; each
worker's ``/api/status`` lists both workers, alive, under the ids the block
gave them, and names itself; the block printed them; the admin token it was
given is the one the workers accept.

Then ``docs/nginx-audiocopy.conf``, with only its listen port and the two
upstream ports replaced, runs in a real nginx in front of those workers
(``nginx -t`` first): the API answers through it, one client stays on one
worker (``ip_hash``), and a WebSocket stream goes through (upgrade, start,
audio, windows, stop). Without nginx that test is skipped, saying so; with
``CI`` set it fails instead (CI installs nginx).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from postgres_server import ROLE, postgres_server  # noqa: F401
from scaled_out_fixtures import clean_env, free_port, get_json, poll, worker_ids, write_catalogue
from synth import melody

pytestmark = pytest.mark.scaleout

README = Path(__file__).resolve().parents[1] / "README.md"
NGINX_SITE = README.parent / "docs" / "nginx-audiocopy.conf"
BLOCK = re.compile(r"<!-- scaled-out-begin -->\s*```bash\n(.*?)```\s*<!-- scaled-out-end -->", re.DOTALL)
TOKEN = "readme-admin-token-0123456789abcdef"


def readme_block() -> str:
    """The README's scaled-out commands (exactly one marked bash block)."""
    found = BLOCK.findall(README.read_text(encoding="utf-8"))
    assert len(found) == 1, "README.md must hold exactly one <!-- scaled-out-begin --> ```bash ... ``` block"
    return found[0]


def test_the_readme_block_is_marked_and_names_its_placeholders():
    block = readme_block()
    for name in ("PG_URL", "MILVUS_URI", "DB", "CATALOG", "NEGATIVES", "ADMIN_TOKEN", "PORTS"):
        assert f"${name}" in block or f"${{{name}" in block, name
    assert "--index milvus" in block and "--worker-id" in block and "/api/status" in block


def _stop_group(pgid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM every process of the group (the block's workers), SIGKILL what is left after ``timeout_s``."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def readme_run(milvus, postgres_server, tmp_path_factory):  # noqa: F811
    """The README block run once in a fresh folder: (its output, env, run folder); its workers stopped after."""
    root = tmp_path_factory.mktemp("readme")
    catalog, negatives = write_catalogue(root / "music", {"alpha": (11, 20.0), "bravo": (12, 20.0)})
    dbname = f"readme_{os.getpid()}"
    with postgres_server.admin() as con:
        con.execute(f"CREATE DATABASE {dbname} OWNER {ROLE}")
    env = clean_env() | {"PG_URL": postgres_server.url(dbname), "MILVUS_URI": milvus.uri, "DB": str(root / "db"),
                         "CATALOG": str(catalog), "NEGATIVES": str(negatives), "ADMIN_TOKEN": TOKEN,
                         "PORTS": f"{free_port()} {free_port()}"}
    run = root / "run"
    run.mkdir()
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", readme_block()], cwd=run, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=600)
        logs = "\n".join(f"{p.name}:\n{p.read_text(errors='replace')[-2000:]}" for p in run.glob("worker-*.log"))
        assert proc.returncode == 0, f"the README block failed ({proc.returncode}):\n{out[-3000:]}\n{logs}"
        yield out, env, run
    finally:
        if proc.poll() is None:
            proc.kill()
        _stop_group(proc.pid)
        with postgres_server.admin() as con:
            con.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def test_the_readme_scaled_out_block_starts_workers_that_see_each_other(readme_run):
    out, env, _ = readme_run
    config = json.loads((Path(env["DB"]) / "fingerprint.json").read_text())["index"]
    assert config["milvus_uri"] == env["MILVUS_URI"]  # enrolled on Milvus
    ports = env["PORTS"].split()
    ids = {f"{socket.gethostname()}-{port}" for port in ports}
    for port in ports:
        url = f"http://127.0.0.1:{port}/api/status"
        status = poll(lambda url=url: (s := get_json(url)) and worker_ids(s) >= ids and s, timeout_s=15,
                      what=f"{url} listing both workers alive")
        assert status["worker_id"] == f"{socket.gethostname()}-{port}"
        mine = get_json(f"http://127.0.0.1:{port}/api/monitors", token=TOKEN)
        assert mine["urls_shown"] is True  # the workers took the block's admin token
    for wid in ids:  # the block's own listing
        assert f"{wid} alive" in out, out


# --------------------------------------------------------------------------
# docs/nginx-audiocopy.conf in front of the README's workers


def _nginx_site(ports: list[str], listen: int) -> str:
    """The documented site with the test's worker ports and a loopback listen port (each edit must apply once)."""
    text = NGINX_SITE.read_text(encoding="utf-8")
    edits = [(r"listen 80;", f"listen 127.0.0.1:{listen};"),
             (r"server 127\.0\.0\.1:8081 ", f"server 127.0.0.1:{ports[0]} "),
             (r"server 127\.0\.0\.1:8082 ", f"server 127.0.0.1:{ports[1]} ")]
    for pattern, new in edits:
        text, n = re.subn(pattern, new, text)
        assert n == 1, f"{NGINX_SITE.name}: expected one {pattern!r}"
    return text


@pytest.fixture
def nginx(readme_run, tmp_path):
    """nginx running the documented site in front of the README's two workers; yields its base URL."""
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed (apt-get install nginx); CI must check the documented config")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    _, env, _ = readme_run
    port = free_port()
    (tmp_path / "audiocopy.conf").write_text(_nginx_site(env["PORTS"].split(), port))
    temp = " ".join(f"{kind}_temp_path {tmp_path / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                        "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\nevents {{}}\n"
        f"http {{ access_log off; {temp} include {tmp_path / 'audiocopy.conf'}; }}\n")
    cmd = [exe, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    checked = subprocess.run([*cmd, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, f"nginx -t refused the documented site:\n{checked.stderr}"
    proc = subprocess.Popen([*cmd, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        poll(lambda: _answers(port), timeout_s=15, what="nginx listening")
        yield f"127.0.0.1:{port}"
    finally:
        _stop_group(proc.pid, timeout_s=10)
        proc.wait(timeout=10)


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_documented_nginx_site_proxies_the_api_and_websocket_streams(nginx, readme_run):
    import aiohttp

    _, env, _ = readme_run
    ids = {f"{socket.gethostname()}-{port}" for port in env["PORTS"].split()}
    status = get_json(f"http://{nginx}/api/status")
    assert status["worker_id"] in ids and worker_ids(status) >= ids
    # ip_hash: one client address, one worker, request after request.
    assert {get_json(f"http://{nginx}/api/status")["worker_id"] for _ in range(5)} == {status["worker_id"]}

    async def stream() -> list[str]:
        """A WebSocket stream through nginx: the upgrade, a start, 4 s of a catalogue track, the stop."""
        async with aiohttp.ClientSession() as session, session.ws_connect(f"ws://{nginx}/ws") as ws:
            await ws.send_json({"type": "start", "sample_rate": 16000, "format": "s16le", "channels": 1,
                                "source": "through-nginx"})
            kinds = [(await ws.receive_json(timeout=15))["type"]]
            await ws.send_bytes((melody(11, 4.0, 16000) * 32767).astype("<i2").tobytes())
            await ws.send_json({"type": "stop"})
            while kinds[-1] not in ("stopped", "error"):
                kinds.append((await ws.receive_json(timeout=30))["type"])
            return kinds

    kinds = asyncio.run(stream())
    assert kinds[0] == "ready" and kinds[-1] == "stopped" and "window" in kinds, kinds
