"""The studio is safe to expose: local by default, a password beyond this machine, nothing read or
written outside its root, uploads only of audio files of limited size with plain names."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from sda_studio.command import AUTH_VARIABLE, IDLE_POLL_SECONDS, is_local, parse_auth, serve
from sda_studio.root import StudioError, StudioRoot
from sda_studio.studio import Studio
from studio_helpers import free_port

from sda_core.cli.app import main


@pytest.fixture
def root(studio_root):
    return StudioRoot(studio_root, max_upload_bytes=50_000)


def test_paths_outside_the_root_are_refused(root, studio_root, tmp_path):
    assert root.resolve("sounds") == studio_root.resolve() / "sounds"
    assert root.resolve(str(studio_root / "sounds")) == studio_root.resolve() / "sounds"
    assert root.resolve("sounds/../runs") == studio_root.resolve() / "runs"  # stays inside: fine
    for outside in ("..", "../other", "/etc", str(tmp_path), "sounds/../../x"):
        with pytest.raises(StudioError, match="outside the studio's folder"):
            root.resolve(outside)


def test_a_symlink_out_of_the_root_is_refused(root, studio_root, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (studio_root / "escape").symlink_to(secret, target_is_directory=True)
    (studio_root / "inside").symlink_to(studio_root / "sounds", target_is_directory=True)
    with pytest.raises(StudioError, match="outside the studio's folder"):
        root.resolve("escape")
    with pytest.raises(StudioError, match="outside the studio's folder"):
        root.resolve("escape/anything.wav")
    assert root.resolve("inside") == (studio_root / "sounds").resolve()


def test_every_action_keeps_to_the_root(root, tmp_path):
    studio = Studio(root)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(StudioError, match="outside"):
        studio.scan(str(outside))
    with pytest.raises(StudioError, match="outside"):
        studio.start("sounds", str(outside / "run"))
    with pytest.raises(StudioError, match="outside"):
        studio.generate(str(outside))
    with pytest.raises(StudioError, match="outside"):
        studio.open_run("../..")
    with pytest.raises(StudioError, match="outside"):
        Studio(root, runs_dir=str(outside))
    assert list(outside.iterdir()) == []


def upload_source(tmp_path, name, size=1000):
    path = tmp_path / "incoming" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"\0" * size)
    return path


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.wav", "without folders or '..'"),
        ("..wav", "without folders or '..'"),
        ("a/b.wav", "without folders or '..'"),
        ("a\\b.wav", "without folders or '..'"),
        (".hidden.wav", "hidden files"),
        ("notes.txt", "is not an audio file"),
        ("script.py", "is not an audio file"),
    ],
)
def test_upload_names_are_checked(root, name, reason):
    with pytest.raises(StudioError, match=reason.replace("(", r"\(").replace(".", r"\.")):
        root.check_upload_name(name)


def test_an_upload_is_copied_into_a_new_folder_or_refused_whole(root, studio_root, tmp_path):
    good = upload_source(tmp_path, "kick.wav")
    big = upload_source(tmp_path, "huge.wav", size=60_000)
    text = upload_source(tmp_path, "notes.txt")
    with pytest.raises(StudioError, match="up to 0 MB"):
        root.upload([("kick.wav", good), ("huge.wav", big)], "drums")
    with pytest.raises(StudioError, match="not an audio file"):
        root.upload([("kick.wav", good), ("notes.txt", text)], "drums")
    with pytest.raises(StudioError, match="refused"):
        root.upload([("kick.wav", good)], "../drums")
    assert not (studio_root / "uploads").exists()  # nothing half-uploaded
    made = root.upload([("kick.wav", good)], "drums")
    assert made == studio_root.resolve() / "uploads" / "drums" and (made / "kick.wav").read_bytes() == good.read_bytes()


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_which_hosts_are_local(host, local):
    assert is_local(host) is local


def test_a_host_beyond_this_machine_needs_a_password(monkeypatch):
    monkeypatch.delenv(AUTH_VARIABLE, raising=False)
    assert parse_auth(None, "127.0.0.1") is None
    with pytest.raises(StudioError, match="give a password with --auth USER:PASSWORD"):
        parse_auth(None, "0.0.0.0")
    assert parse_auth("ann:secret", "0.0.0.0") == ("ann", "secret")
    with pytest.raises(StudioError, match="USER:PASSWORD"):
        parse_auth("ann", "0.0.0.0")
    monkeypatch.setenv(AUTH_VARIABLE, "bob:pw")
    assert parse_auth(None, "0.0.0.0") == ("bob", "pw")


def test_sda_studio_refuses_an_open_host_without_a_password(studio_root, monkeypatch, capsys):
    monkeypatch.delenv(AUTH_VARIABLE, raising=False)
    assert main(["studio", "--host", "0.0.0.0", "--root", str(studio_root)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("sda: error: --host 0.0.0.0 lets other machines reach the studio"), error
    assert "Traceback" not in error and error.count("\n") == 1


def test_with_a_password_the_page_asks_for_it(root):
    server = serve(root, port=free_port(), auth=("ann", "secret"))
    try:
        url = server.local_url.rstrip("/")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/config", timeout=30)
        assert refused.value.code == 401
        login = urllib.request.Request(
            f"{url}/login",
            data=b"username=ann&password=wrong",
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        with pytest.raises(urllib.error.HTTPError) as wrong:
            urllib.request.urlopen(login, timeout=30)
        assert wrong.value.code == 400
        login.data = b"username=ann&password=secret"
        with urllib.request.urlopen(login, timeout=30) as answer:
            assert json.loads(answer.read()) == {"success": True}
    finally:
        server.close()


def test_files_outside_the_root_are_not_served(root, tmp_path):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF")
    server = serve(root, port=free_port())
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"  # no usage reports from a local tool
    try:
        url = server.local_url.rstrip("/")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/gradio_api/file={secret}", timeout=30)
        assert refused.value.code in (403, 404)
        # Gradio's queue looks for work every 50 ms, not every millisecond (9% of a core when idle)
        assert server._queue.sleep_when_free == IDLE_POLL_SECONDS  # noqa: SLF001
        inside = root.path / "sounds" / "sound_000.wav"
        with urllib.request.urlopen(f"{url}/gradio_api/file={inside}", timeout=30) as answer:
            assert answer.read(4) == b"RIFF"
    finally:
        server.close()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_sda_studio_serves_the_page_on_127_0_0_1_until_ctrl_c(studio_root):
    """Started as a shell starts a background job (SIGINT ignored), Ctrl-C still stops it."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sda_core", "studio", "--root", str(studio_root), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if sys.platform != "win32" else None,  # noqa: PLW1509 - no threads here
    )
    try:
        line = server.stdout.readline()
        assert (
            line.strip()
            == f"sda studio: open http://127.0.0.1:{port} (serving {studio_root.resolve()}; Ctrl-C to quit)"
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as answer:
            assert answer.status == 200 and b"sda studio" in answer.read()
        with socket.socket() as probe:  # not reachable on the machine's other addresses
            probe.settimeout(5)
            address = socket.gethostbyname(socket.gethostname())
            if not address.startswith("127."):
                assert probe.connect_ex((address, port)) != 0
    finally:
        server.send_signal(signal.SIGINT)
        _out, errors = server.communicate(timeout=60)
    assert server.returncode == 0, errors
    assert "Traceback" not in errors
