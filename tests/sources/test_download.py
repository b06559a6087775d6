"""Tests for cifarkit.sources.download against a local HTTP server.

The server runs on 127.0.0.1 (port 0) in a thread, serves a synthetic payload with byte-range
support, and can be told to misbehave: cut the body short, ignore ``Range``, answer with an
error status, stall, or send the wrong bytes. Every request it receives is recorded so the tests
can check what the client actually asked for.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cifarkit.constants import ARCHIVE_MD5, OFFICIAL_BASE_URL
from cifarkit.errors import ChecksumError, CifarkitError, DownloadError, OutputError, UsageError
from cifarkit.sources import download as dl

FILE = "cifar-10-python.tar.gz"
PAYLOAD = os.urandom(300 * 1024 + 17)  # odd size, so halves and offsets are not round numbers
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    """What the handler serves and how it misbehaves; ``requests`` records what it was asked."""

    body: bytes = PAYLOAD
    path: str = f"/files/{FILE}"
    truncate_first: int = 0  # this many first requests get half their body, then a closed socket
    ignore_range: bool = False
    fail_statuses: list[int] = field(default_factory=list)  # answered to the first requests, in order
    stall_first: int = 0  # this many first requests hang without answering (until teardown)
    requests: list[dict[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    base: str = ""

    @property
    def url(self) -> str:
        return self.base + self.path


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a closed socket ends exactly one response.
    protocol_version = "HTTP/1.0"
    timeout = 5  # a stuck client cannot hold a handler thread for long

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        with state.lock:
            index = len(state.requests)
            state.requests.append({"path": self.path, "range": self.headers.get("Range")})

        if index < state.stall_first:
            state.release.wait(timeout=5)
            return
        if index < len(state.fail_statuses):
            self.send_error(state.fail_statuses[index])
            return
        if self.path != state.path:
            self.send_error(404)
            return

        body = state.body
        start = 0
        wanted = self.headers.get("Range")
        if wanted and not state.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", wanted)
            assert match, f"client sent an unexpected Range header: {wanted!r}"
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        if index < state.truncate_first:
            # Promise the whole body, deliver half, hang up.
            self.wfile.write(rest[: len(rest) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(rest)


@pytest.fixture
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ServerState:
    # A proxy from the environment would send 127.0.0.1 traffic elsewhere.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.state = state  # type: ignore[attr-defined]
    host, port = httpd.server_address[:2]
    state.base = f"http://{host}:{port}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        state.release.set()  # let stalled handlers finish
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()

    request.addfinalizer(stop)
    return state


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record backoff pauses instead of sleeping (tests pass backoff=0 anyway)."""
    pauses: list[float] = []
    monkeypatch.setattr(dl, "_sleep", pauses.append)
    return pauses


def fetch(state: ServerState, dest: Path, **kwargs: object) -> Path:
    options: dict[str, object] = {"url": state.url, "md5": PAYLOAD_MD5, "backoff": 0, "quiet": True}
    options.update(kwargs)
    return dl.download("cifar10", dest, **options)  # type: ignore[arg-type]


def part_of(dest: Path) -> Path:
    return dest / (FILE + ".part")


# --- the cases from the specification --------------------------------------------------------


def test_truncated_response_is_resumed_on_retry(server: ServerState, tmp_path: Path) -> None:
    server.truncate_first = 1
    path = fetch(server, tmp_path)
    assert path == tmp_path / FILE
    assert path.read_bytes() == PAYLOAD
    assert hashlib.md5(path.read_bytes()).hexdigest() == PAYLOAD_MD5
    assert [r["range"] for r in server.requests] == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert not part_of(tmp_path).exists()


def test_existing_partial_is_completed_with_one_ranged_request(server: ServerState, tmp_path: Path) -> None:
    k = 123_457
    part_of(tmp_path).write_bytes(PAYLOAD[:k])
    path = fetch(server, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [{"path": server.path, "range": f"bytes={k}-"}]
    assert not part_of(tmp_path).exists()


def test_server_ignoring_range_starts_over(server: ServerState, tmp_path: Path) -> None:
    server.ignore_range = True
    # A wrong prefix proves the partial was replaced, not appended to.
    part_of(tmp_path).write_bytes(b"x" * 5000)
    path = fetch(server, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == ["bytes=5000-"]


def test_wrong_checksum_leaves_nothing(server: ServerState, tmp_path: Path) -> None:
    server.body = bytes(len(PAYLOAD))
    wrong_md5 = hashlib.md5(server.body).hexdigest()
    with pytest.raises(ChecksumError) as caught:
        fetch(server, tmp_path)
    message = str(caught.value)
    assert PAYLOAD_MD5 in message and wrong_md5 in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_not_found_fails_at_once(server: ServerState, tmp_path: Path) -> None:
    url = server.url
    server.path = "/elsewhere"  # the file is gone from where the client looks
    with pytest.raises(DownloadError) as caught:
        fetch(server, tmp_path, url=url, retries=5)
    message = str(caught.value)
    assert "404" in message and url in message
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_other_client_error_is_not_retried(server: ServerState, tmp_path: Path) -> None:
    server.fail_statuses = [403] * 5
    with pytest.raises(DownloadError, match="403"):
        fetch(server, tmp_path, retries=4)
    assert len(server.requests) == 1


def test_present_valid_file_needs_no_request(
    server: ServerState, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    final = tmp_path / FILE
    final.write_bytes(PAYLOAD)
    assert fetch(server, tmp_path, quiet=False) == final
    assert server.requests == []
    assert "already present, verified" in capsys.readouterr().err


def test_unknown_name_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        dl.download("cifar11", tmp_path, md5=PAYLOAD_MD5)
    message = str(caught.value)
    assert "cifar11" in message
    for short in ("cifar10", "cifar10-binary", "cifar100", "cifar100-binary"):
        assert short in message
    assert list(tmp_path.iterdir()) == []


# --- retries, backoff and resumption ----------------------------------------------------------


def test_server_errors_are_retried_with_exponential_backoff(
    server: ServerState, tmp_path: Path, no_pauses: list[float]
) -> None:
    server.fail_statuses = [500, 503]
    path = fetch(server, tmp_path, backoff=0.5, retries=3)
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 3
    assert no_pauses == [0.5, 1.0]


def test_gives_up_after_retries_with_last_reason(server: ServerState, tmp_path: Path, no_pauses: list[float]) -> None:
    server.fail_statuses = [502, 502, 503]
    with pytest.raises(DownloadError) as caught:
        fetch(server, tmp_path, retries=2, backoff=1.0)
    message = str(caught.value)
    assert "503" in message and "3 attempts" in message and "\n" not in message
    assert len(server.requests) == 3
    assert no_pauses == [1.0, 2.0]
    assert not (tmp_path / FILE).exists()


def test_interrupted_download_resumes_on_next_run(server: ServerState, tmp_path: Path) -> None:
    server.truncate_first = 2
    with pytest.raises(DownloadError) as caught:
        fetch(server, tmp_path, retries=1)
    # Two halvings: half the file, then half of the rest.
    held = len(PAYLOAD) // 2
    held += (len(PAYLOAD) - held) // 2
    assert part_of(tmp_path).read_bytes() == PAYLOAD[:held]
    assert "resume" in str(caught.value)
    assert not (tmp_path / FILE).exists()

    path = fetch(server, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == [None, f"bytes={len(PAYLOAD) // 2}-", f"bytes={held}-"]


def test_complete_partial_is_verified_after_416(server: ServerState, tmp_path: Path) -> None:
    # An earlier run received everything but stopped before the rename.
    part_of(tmp_path).write_bytes(PAYLOAD)
    path = fetch(server, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == [f"bytes={len(PAYLOAD)}-"]


def test_oversized_partial_starts_over(server: ServerState, tmp_path: Path) -> None:
    part_of(tmp_path).write_bytes(PAYLOAD + b"junk")
    path = fetch(server, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == [f"bytes={len(PAYLOAD) + 4}-", None]


def test_timeout_is_retried(server: ServerState, tmp_path: Path) -> None:
    server.stall_first = 1
    path = fetch(server, tmp_path, timeout=0.3)
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 2


def test_connection_refused_is_a_download_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as probe:  # find a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError) as caught:
        dl.download(
            "cifar10", tmp_path, url=f"http://127.0.0.1:{port}/", md5=PAYLOAD_MD5, retries=1, backoff=0, quiet=True
        )
    assert f"127.0.0.1:{port}/{FILE}" in str(caught.value)


def test_failed_download_removes_the_folders_it_made(server: ServerState, tmp_path: Path) -> None:
    server.fail_statuses = [404]
    with pytest.raises(DownloadError):
        fetch(server, tmp_path / "new" / "archives")
    assert list(tmp_path.iterdir()) == []  # neither "new" nor "new/archives" is left behind


def test_folder_holding_a_partial_download_is_kept(server: ServerState, tmp_path: Path) -> None:
    server.truncate_first = 1
    with pytest.raises(DownloadError):
        fetch(server, tmp_path / "archives", retries=0)
    assert part_of(tmp_path / "archives").read_bytes() == PAYLOAD[: len(PAYLOAD) // 2]


# --- checksums, URLs and destinations ---------------------------------------------------------


def test_corrupt_existing_file_is_replaced(server: ServerState, tmp_path: Path) -> None:
    final = tmp_path / FILE
    final.write_bytes(b"not the archive")
    assert fetch(server, tmp_path).read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_no_verify_keeps_whatever_arrived(server: ServerState, tmp_path: Path) -> None:
    server.body = b"different bytes entirely"
    path = fetch(server, tmp_path, verify=False)
    assert path.read_bytes() == b"different bytes entirely"


def test_md5_is_case_insensitive(server: ServerState, tmp_path: Path) -> None:
    assert fetch(server, tmp_path, md5=PAYLOAD_MD5.upper()).read_bytes() == PAYLOAD


def test_mirror_base_url_gets_file_name_appended(server: ServerState, tmp_path: Path) -> None:
    dl.download(FILE, tmp_path, url=server.base + "/files/", md5=PAYLOAD_MD5, backoff=0, quiet=True)
    assert [r["path"] for r in server.requests] == [f"/files/{FILE}"]
    assert (tmp_path / FILE).read_bytes() == PAYLOAD


def test_resolve_url() -> None:
    assert dl.resolve_url(FILE) == OFFICIAL_BASE_URL + FILE
    assert dl.resolve_url(FILE, "https://mirror.example/cifar/") == f"https://mirror.example/cifar/{FILE}"
    assert dl.resolve_url(FILE, "https://mirror.example/x.tgz") == "https://mirror.example/x.tgz"
    for bad in ("ftp://mirror.example/", "file:///tmp/x", "mirror.example/", "http://"):
        with pytest.raises(UsageError):
            dl.resolve_url(FILE, bad)


def test_archives_have_official_checksums() -> None:
    assert set(dl.ARCHIVES.values()) == set(ARCHIVE_MD5)
    assert dl.archive_file_name("cifar100-binary") == "cifar-100-binary.tar.gz"
    assert dl.archive_file_name("cifar-100-binary.tar.gz") == "cifar-100-binary.tar.gz"


@pytest.mark.parametrize(
    "options",
    [{"md5": "abc"}, {"md5": PAYLOAD_MD5, "retries": -1}, {"md5": PAYLOAD_MD5, "timeout": 0}],
)
def test_bad_options_are_usage_errors(tmp_path: Path, options: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        dl.download("cifar10", tmp_path, **options)  # type: ignore[arg-type]


def test_unwritable_destination_is_an_output_error(server: ServerState, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(OutputError) as caught:
        fetch(server, blocker / "sub")
    assert isinstance(caught.value, CifarkitError)
    assert server.requests == []


@pytest.mark.parametrize("folder_option", ["--dest", "--out", "-o"])
def test_the_command_downloads_into_the_folder_named(server: ServerState, tmp_path: Path, folder_option: str) -> None:
    from typer.testing import CliRunner

    from cifarkit.cli import app

    out = tmp_path / "archives"
    result = CliRunner().invoke(
        app, ["download", "cifar10", "--url", server.url, "--md5", PAYLOAD_MD5, folder_option, str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert (out / FILE).read_bytes() == PAYLOAD
    assert sorted(p.name for p in out.iterdir()) == [FILE]  # no partial left beside it
