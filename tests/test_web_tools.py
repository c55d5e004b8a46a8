"""The operator tools: tools/stream.py against a live test server, tools/loadtest.py's report writing."""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import pattern
from test_web_fixtures import TOKEN, recognizer, settings  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.asyncio
async def test_stream_tool_prints_matches_and_plays(aiohttp_server, settings, recognizer, tmp_path, capsys):
    from audiocopy.web.app import create_app
    from audiocopy.web.auth import AdminAuth

    stream = load_tool("stream")
    server = await aiohttp_server(create_app(settings, recognizer=recognizer, auth=AdminAuth.from_token(TOKEN)))
    wav = tmp_path / "chord.wav"
    sf.write(wav, pattern("chord", 5, 44100), 44100)
    args = argparse.Namespace(source=str(wav), server=f"ws://127.0.0.1:{server.port}/ws", no_pacing=True,
                              name=None, all=False, json=True)
    assert await stream.run(args) == 0
    messages = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert messages[0]["type"] == "ready" and messages[0]["source"] == "chord.wav"
    assert messages[0]["realtime"] is False
    windows = [m for m in messages if m["type"] == "window"]
    assert len(windows) == 6 and all(w["match"] == "chord" for w in windows)
    assert [m["type"] for m in messages if m["type"] in ("play", "stopped")] == ["play", "stopped"]


def test_stream_tool_human_lines():
    stream = load_tool("stream")
    window = {"type": "window", "start_s": 1.0, "end_s": 3.5, "match": None, "score": -1.0, "latency_ms": 12.0}
    assert stream.describe(window, show_all=False) is None
    assert "-" in stream.describe(window, show_all=True)
    assert "pulses" in stream.describe({**window, "match": "pulses", "score": 2.0}, show_all=False)
    assert stream.describe({"type": "error", "code": "x", "message": "y"}, False) == "server error x: y"
    with pytest.raises(stream.StreamError, match="no such file"):
        stream.frames_for("/no/such/file.wav", 1600)


def test_loadtest_writes_only_its_section(tmp_path):
    loadtest = load_tool("loadtest")
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Accuracy\nkeep me\n\n<!-- server-begin -->\nold\n<!-- server-end -->\n\n"
                   "## Other\nkeep me too\n")
    loadtest.write_section(doc, "new results\n")
    text = doc.read_text()
    assert "old" not in text and "<!-- server-begin -->\nnew results\n<!-- server-end -->" in text
    assert text.startswith("# Benchmarks\n\n## Accuracy\nkeep me\n") and text.endswith("## Other\nkeep me too\n")
    fresh = tmp_path / "new.md"
    loadtest.write_section(fresh, "x\n")
    assert fresh.read_text() == "# Benchmarks\n\n<!-- server-begin -->\nx\n<!-- server-end -->\n"


def test_loadtest_targets_only_this_machine():
    loadtest = load_tool("loadtest")
    assert loadtest.check_local("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert loadtest.check_local("http://localhost:8080") == "http://localhost:8080"
    for url in ("http://10.0.0.5:8080", "http://example.org", "http://192.168.1.2"):
        with pytest.raises(SystemExit):
            loadtest.check_local(url)
    assert loadtest.percentile([5, 1, 3, 2, 4], 50) == 3 and loadtest.percentile([1, 2, 3, 100], 95) == 100


def test_loadtest_clone_db(tiny_db, tmp_path):
    loadtest = load_tool("loadtest")
    from audiocopy.engines import catalog

    loadtest.clone_db(tiny_db, tmp_path / "db10", 10)
    records = catalog.track_records(tmp_path / "db10")
    assert len(records) == 10 and len({r["track_id"] for r in records}) == 10
    with pytest.raises(loadtest.BenchError, match="exists"):
        loadtest.clone_db(tiny_db, tmp_path / "db10", 5)
    with pytest.raises(SystemExit, match="exists"):
        loadtest.main(["clone-db", str(tiny_db), str(tmp_path / "db10"), "--tracks", "5"])
    assert "cnnbin (embedding track models), 10 tracks (10 are model clones" in loadtest.describe_db(tmp_path / "db10")
    assert loadtest.describe_db(tiny_db).endswith("cnnbin (embedding track models), 3 tracks.")
    catalog.set_calibration(tmp_path / "db10", {})
    assert loadtest.describe_db(tmp_path / "db10").endswith("; not calibrated (its decisions use the engine's "
                                                          "default threshold; the timing is the same).")


class _FakeRawInputStream:
    """Stands in for sounddevice.RawInputStream: calls back from its own thread, like PortAudio."""

    blocks = [bytes([i]) * 3200 for i in range(1, 4)]

    def __init__(self, *, samplerate, channels, dtype, blocksize, callback):
        assert (samplerate, channels, dtype, blocksize) == (16000, 1, "int16", 1600)
        self.callback = callback

    def __enter__(self):
        import threading

        def feed():
            for block in self.blocks:
                self.callback(block, len(block) // 2, None, None)

        threading.Thread(target=feed, daemon=True).start()
        return self

    def __exit__(self, *exc):
        return False


def test_stream_tool_mic_frames_arrive_in_order(monkeypatch):
    import asyncio
    import types

    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(RawInputStream=_FakeRawInputStream))
    stream = load_tool("stream")

    async def first_blocks():
        frames = stream.frames_for("mic", 1600)
        got = [await asyncio.wait_for(frames.__anext__(), 5) for _ in _FakeRawInputStream.blocks]
        await frames.aclose()
        return got

    assert asyncio.run(first_blocks()) == _FakeRawInputStream.blocks


def test_stream_tool_mic_errors_are_clear(monkeypatch):
    import asyncio
    import types

    stream = load_tool("stream")
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    with pytest.raises(stream.StreamError, match="needs the sounddevice package"):
        asyncio.run(stream.frames_for("mic", 1600).__anext__())

    def no_device(**kw):
        raise RuntimeError("Error querying device -1")

    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(RawInputStream=no_device))
    with pytest.raises(stream.StreamError, match="cannot open a microphone: Error querying device"):
        asyncio.run(stream.frames_for("mic", 1600).__anext__())


def test_loadtest_cpu_meter_sees_named_threads_and_this_process():
    import os
    import threading

    from audiocopy.web.app import COMPUTE_THREAD
    from audiocopy.web.threads import name_os_thread

    loadtest = load_tool("loadtest")
    stop, named = threading.Event(), threading.Event()

    def busy():
        name_os_thread(COMPUTE_THREAD)
        named.set()
        while not stop.is_set():
            sum(range(1000))

    worker = threading.Thread(target=busy)
    worker.start()
    assert named.wait(30)  # the meter finds threads by name: start it once the name is set
    meter = loadtest.CpuMeter(os.getpid(), loadtest.thread_groups(os.getpid()))
    meter.start()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # the main thread works too: it plays the event loop
        sum(range(1000))
    cpu = meter.stop()  # before the worker ends: a thread that is gone has no /proc entry to read
    stop.set()
    worker.join()
    # Both got some CPU and were told apart (how much depends on what else runs on the machine).
    assert cpu.get("compute", 0) > 0 and cpu.get("loop", 0) > 0
    assert cpu["self"] >= cpu["compute"] and 0.4 < cpu["wall_s"] < 5 and cpu["other"] >= 0


def test_loadtest_report_names_rate_cpu_and_stages():
    loadtest = load_tool("loadtest")
    before = {"windows": 10, "cut": 10, **dict.fromkeys(loadtest.STAGES, 0.1)}
    after = {"windows": 110, "cut": 210, **dict.fromkeys(loadtest.STAGES, 0.2), "score_s": 0.6, "score_cpu_s": 0.5}
    assert loadtest.stage_ms_per_window(before, after) == {  # prep per window cut, the others per window scored
        **dict.fromkeys(loadtest.STAGES, 1.0), "score_s": 5.0, "score_cpu_s": 4.0, "prep_s": 0.5, "prep_cpu_s": 0.5}
    assert loadtest.stage_ms_per_window({"windows": 1}, {"windows": 5}) == {}  # an older server: no stages
    step = loadtest.StepResult(300, 30.0, 16800, 0, 120.0, 250.0, 400.0, 0,
                               {"mean_batch": 40.0, "prep_s": 0.1, "score_s": 2.0, "decide_s": 0.05,
                                "prep_cpu_s": 0.08, "score_cpu_s": 1.5, "decide_cpu_s": 0.04},
                               {"loop": 0.2, "compute": 0.9, "other_threads": 0.3, "self": 0.3, "other": 0.1},
                               join_s=6.0, join_p95_ms=280.0, measured=12000)
    args = loadtest.build_parser().parse_args(["--db", "x", "--max-p95-ms", "300"])
    text = loadtest.report([("100 tracks, fingerprint", [step])], [], args, ["--db", "x"], ["a note"])
    assert "48000 Hz mono s16le audio in 100 ms frames" in text and "- a note" in text
    assert "join 50 per second" in text
    assert ("| 300 | 6.0 | 16800 | 120.0 | 250.0 | 400.0 | 280.0 | 0 | 40.0 | 0.2 | 0.9 | 0.3 | 0.3 | 0.1 | "
            "0.08 (0.10) / 1.50 (2.00) / 0.04 (0.05) |") in text
    assert "Command: `python tools/loadtest.py --db x`" in text and "**at least 300" in text
    # A dropped window fails the step, whenever it was dropped; so does a step that measured nothing steady.
    assert not loadtest.StepResult(300, 30.0, 16800, 1, 120.0, 250.0, 400.0, 0, {}, measured=12000).holds(300)
    assert not loadtest.StepResult(300, 30.0, 16800, 0, 120.0, 250.0, 400.0, 0, {}, measured=0).holds(300)
    assert not loadtest.StepResult(300, 30.0, 16800, 0, 120.0, 300.0, 400.0, 0, {}, measured=9).holds(300)
    assert loadtest.StepResult(300, 30.0, 16800, 0, 120.0, 299.0, 400.0, 0, {}, measured=9).holds(300)


def test_loadtest_joins_streams_at_the_rate_asked_and_measures_once_all_are_up(monkeypatch):
    """Streams join evenly spaced; latencies before every stream is up count only as "while joining"."""
    loadtest = load_tool("loadtest")
    joined: list[float] = []

    async def fake_stream(ws_url, frames, rate, frame_s, join_at, end_at, index):
        joined.append(join_at)
        r = loadtest.StreamResult(windows=2)
        r.latencies = [(join_at + 2.5, 900.0), (end_at, 50.0)]  # its first window late, a later one on time
        return r

    async def fake_status(base):
        return {"batcher": {"batches": 0, "windows": 0}}

    monkeypatch.setattr(loadtest, "one_stream", fake_stream)
    monkeypatch.setattr(loadtest, "fetch_status", fake_status)
    step = asyncio.run(loadtest.run_step("http://127.0.0.1:1", [], 10, 5.0, 48000, 0.1, None, join_per_s=5.0))
    gaps = np.diff(sorted(joined))
    assert step.join_s == 2.0 and np.allclose(gaps, 0.2)
    # The first windows of the joins are answered before the last join settled: they are not the step's p95.
    assert step.p95_ms == 50.0 and step.join_p95_ms == 900.0 and step.measured == 10


def test_server_runs_numpy_blas_on_one_thread():
    import ctypes

    from audiocopy.web.threads import single_threaded_blas

    changed = single_threaded_blas()
    if not changed:
        pytest.skip("no OpenBLAS bundled with NumPy in this environment")
    maps = Path("/proc/self/maps").read_text()
    path = next(line.split()[-1] for line in maps.splitlines() if changed[0] in line)
    lib = ctypes.CDLL(path)
    getter = next(getattr(lib, n) for n in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                                            "openblas_get_num_threads64_", "openblas_get_num_threads")
                  if hasattr(lib, n))
    assert getter() == 1


def test_server_compute_workers_embed_in_their_own_thread():
    """Each compute worker runs its encoder passes itself (``encoder.forward.embed_in_calling_thread``)."""
    from audiocopy.encoder import forward
    from audiocopy.web import app as app_mod
    from audiocopy.web.keys import COMPUTE_EXECUTOR, IO_EXECUTOR

    async def main():
        app: dict = {}
        setup = app_mod._executors(app)
        await setup.__anext__()
        try:
            serial = [app[COMPUTE_EXECUTOR].submit(forward.embeds_in_calling_thread).result() for _ in range(4)]
            io = app[IO_EXECUTOR].submit(forward.embeds_in_calling_thread).result()
        finally:
            await setup.aclose()
        return serial, io

    serial, io = asyncio.run(main())
    assert all(serial) and not io


def test_loadtest_refuses_a_folder_that_is_no_database(tmp_path, capsys):
    loadtest = load_tool("loadtest")
    with pytest.raises(SystemExit) as exc:
        loadtest.main(["--db", str(tmp_path / "nothing"), "--streams", "1"])
    assert exc.value.code == 2 and "no audiocopy database there" in capsys.readouterr().err
