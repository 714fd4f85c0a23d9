import json
import logging
import os
import signal

import pytest
import trio
import trio.testing

from faucet import logs

LINE = "x" * 60


@pytest.fixture(autouse=True)
def restore_root_logger():
    """A failed test may leave its handler on the root logger; take it off."""
    root = logging.getLogger()
    before = list(root.handlers)
    yield
    for handler in root.handlers:
        if handler not in before:
            root.removeHandler(handler)
            handler.close()


def access(**changes):
    fields = dict(
        client="127.0.0.1",
        method="GET",
        path="/api/x?q=1",
        http_version="HTTP/1.1",
        status=200,
        user_agent="curl/8",
        elapsed_ms=3.21,
        worker_id=2,
        route="/api/",
    )
    logs.log_access(**(fields | changes))


def log_200_lines(path, backups: int) -> None:
    """200 lines of about 90 bytes into a log file rotated at 1000 bytes."""
    handle = logs.setup_logging("info", str(path), max_bytes=1000, backups=backups)
    for _ in range(200):
        logs.log.info(LINE)
    handle.close()


def test_rotation_keeps_a_bounded_number_of_files(tmp_path):
    path = tmp_path / "faucet.log"
    log_200_lines(path, backups=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "faucet.log",
        "faucet.log.1",
        "faucet.log.2",
    ]
    assert path.stat().st_size <= 1000
    for backup in ("faucet.log.1", "faucet.log.2"):
        assert 900 < (tmp_path / backup).stat().st_size <= 1000
        assert all(line.endswith(LINE) for line in (tmp_path / backup).read_text().splitlines())


def test_no_backups_truncates_in_place(tmp_path):
    path = tmp_path / "faucet.log"
    log_200_lines(path, backups=0)
    assert [p.name for p in tmp_path.iterdir()] == ["faucet.log"]
    assert path.stat().st_size <= 1000


def test_rotation_continues_from_an_existing_file(tmp_path):
    path = tmp_path / "faucet.log"
    path.write_text("y" * 990 + "\n")
    handle = logs.setup_logging("info", str(path), max_bytes=1000, backups=1)
    logs.log.info(LINE)
    handle.close()
    assert (tmp_path / "faucet.log.1").read_text() == "y" * 990 + "\n"
    assert path.read_text().endswith(LINE + "\n")


def test_reopen_after_rename(tmp_path):
    path = tmp_path / "faucet.log"
    handle = logs.setup_logging("info", str(path))
    logs.log.info("before")
    path.rename(tmp_path / "faucet.log.old")
    handle.reopen()
    logs.log.info("after")
    handle.close()
    assert "before" in (tmp_path / "faucet.log.old").read_text()
    assert "before" not in path.read_text() and "after" in path.read_text()


def test_failed_reopen_keeps_the_old_file(tmp_path):
    path = tmp_path / "logs" / "faucet.log"
    path.parent.mkdir()
    handle = logs.setup_logging("info", str(path))
    path.parent.rename(tmp_path / "moved")
    with pytest.raises(OSError):
        handle.reopen()
    logs.log.info("still here")
    handle.close()
    assert "still here" in (tmp_path / "moved" / "faucet.log").read_text()


async def test_sigusr1_reopens(tmp_path):
    path = tmp_path / "faucet.log"
    handle = logs.setup_logging("info", str(path))
    async with trio.open_nursery() as nursery:
        await nursery.start(logs.reopen_on_sigusr1, handle)
        path.rename(tmp_path / "faucet.log.1")
        os.kill(os.getpid(), signal.SIGUSR1)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    handle.close()
    assert "log file reopened on SIGUSR1" in path.read_text()


def test_text_access_line(tmp_path):
    path = tmp_path / "faucet.log"
    handle = logs.setup_logging("info", str(path))
    access()
    access(worker_id=None, route=None, status=404, user_agent=None, path="/nope")
    handle.close()
    first, second = path.read_text().splitlines()
    assert first.endswith(
        ' INFO    faucet.access: 127.0.0.1 "GET /api/x?q=1 HTTP/1.1" 200 "curl/8" 3.2ms '
        "[/api/]::Worker::2"
    )
    assert second.endswith('127.0.0.1 "GET /nope HTTP/1.1" 404 "-" 3.2ms -')


def test_access_line_escapes_quotes():
    line = logs.access_line({"client": "::1", "method": "GET", "path": "/",
                             "http_version": "HTTP/2", "status": 200,
                             "user_agent": 'say "hi"', "elapsed_ms": 0.04,
                             "target": "Worker::1"})
    assert line == '::1 "GET / HTTP/2" 200 "say \\"hi\\"" 0.0ms Worker::1'


def test_json_lines_parse(tmp_path):
    path = tmp_path / "faucet.log"
    handle = logs.setup_logging("debug", str(path), fmt="json")
    access()
    logs.worker_logger(3).warning("boom")
    logs.log.debug("plain")
    handle.close()
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    first, worker, plain = entries
    assert first["ts"].endswith("Z") and first["level"] == "INFO"
    assert first["logger"] == "faucet.access"
    assert {k: first[k] for k in ("client", "method", "path", "status", "elapsed_ms")} == {
        "client": "127.0.0.1",
        "method": "GET",
        "path": "/api/x?q=1",
        "status": 200,
        "elapsed_ms": 3.21,
    }
    assert (first["target"], first["worker_id"], first["route"]) == (
        "[/api/]::Worker::2",
        2,
        "/api/",
    )
    assert (worker["logger"], worker["level"], worker["msg"]) == (
        "faucet.worker",
        "WARNING",
        "Worker::3 boom",
    )
    assert (worker["target"], worker["route"]) == ("Worker::3", None)
    assert set(plain) == {"ts", "level", "logger", "msg"}


def test_access_skipped_when_level_disables_it(tmp_path, monkeypatch):
    path = tmp_path / "faucet.log"
    handle = logs.setup_logging("warning", str(path))
    monkeypatch.setattr(logs, "access_line", pytest.fail)
    access()
    handle.close()
    assert path.read_text() == ""


def test_worker_logger_prefix(tmp_path):
    path = tmp_path / "faucet.log"
    handle = logs.setup_logging("info", str(path))
    logs.worker_logger(2, "/api/").info("Listening on port %d", 4000)
    handle.close()
    assert (
        path.read_text()
        .rstrip()
        .endswith("INFO    faucet.worker: [/api/]::Worker::2 Listening on port 4000")
    )


def test_exceptions_are_kept(tmp_path):
    path = tmp_path / "faucet.log"
    handle = logs.setup_logging("info", str(path), fmt="json")
    try:
        raise RuntimeError("bad")
    except RuntimeError:
        logs.log.exception("failed")
    handle.close()
    assert "RuntimeError: bad" in json.loads(path.read_text())["exc"]


def test_env_logger_spec_sets_the_default_and_named_loggers(tmp_path):
    path = tmp_path / "faucet.log"
    handle = logs.setup_logging("warn,faucet.access=info,mylib=debug", str(path), stderr=False)
    access()
    logs.log.info("hidden: faucet is at warn")
    logs.log.warning("shown")
    logging.getLogger("mylib.db").debug("shown: an unknown target is a logger of that name")
    logging.getLogger("otherlib").info("hidden: the default is warn")
    handle.close()
    lines = path.read_text().splitlines()
    assert [line.split(None, 2)[2] for line in lines] == [
        'faucet.access: 127.0.0.1 "GET /api/x?q=1 HTTP/1.1" 200 "curl/8" 3.2ms [/api/]::Worker::2',
        "faucet: shown",
        "mylib.db: shown: an unknown target is a logger of that name",
    ]
    assert logging.getLogger("mylib").level == logging.NOTSET  # put back by close()


def test_off_and_directives_alone_silence_the_rest(tmp_path):
    path = tmp_path / "faucet.log"
    handle = logs.setup_logging("off", str(path), stderr=False)
    logs.log.error("hidden")
    handle.close()
    handle = logs.setup_logging("faucet.worker=info", str(path), stderr=False)
    logs.log.error("hidden: only faucet.worker is on")
    logs.worker_logger(1).info("shown")
    handle.close()
    assert path.read_text().splitlines()[0].endswith("faucet.worker: Worker::1 shown")
    assert len(path.read_text().splitlines()) == 1


def test_message_filter_after_the_slash(tmp_path):
    path = tmp_path / "faucet.log"
    handle = logs.setup_logging("info/time(d)? ?out", str(path), stderr=False)
    logs.log.info("worker 2 timed out")
    logs.log.info("worker 2 online")
    handle.close()
    assert [line.split(": ", 1)[1] for line in path.read_text().splitlines()] == [
        "worker 2 timed out"]


def test_log_file_also_writes_stderr_unless_told_not_to(tmp_path, capsys):
    path = tmp_path / "faucet.log"
    handle = logs.setup_logging("info", str(path))
    logs.log.info("both")
    handle.close()
    handle = logs.setup_logging("info", str(path), stderr=False)
    logs.log.info("file only")
    handle.close()
    err = capsys.readouterr().err
    assert err.endswith("INFO    faucet: both\n") and "file only" not in err
    assert path.read_text().splitlines()[0].split(" ", 1)[1] == "INFO    faucet: both"
    assert path.read_text().endswith("INFO    faucet: file only\n")
