"""``alertfilter check`` and ``report`` on hostile inputs: each is named for what it is, quickly,
without reading a huge file into memory and without a traceback: a 2 GB sparse file (zeros, or
behind a wire-format header or an Avro container's magic), a named pipe, a device, a directory of
links that loop or lead nowhere, a directory of 100,000 files, a truncated wire message."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import pytest

from alertfilter.alertfiles import MAX_WIRE_BYTES, expand
from alertfilter.codecs import encode_confluent, read_container
from alertfilter.simulate import simulate, write_container

from .cli_run import run

SCHEMA_ID = 1000
ALL = "def f(alert):\n    return True\n"
TWO_GB = 2 * 1024**3
#: Address space of a check run on a 2 GB file: enough for Python, numpy and the filter process,
#: not for the file (a regression that reads it whole fails with MemoryError).
MEMORY_LIMIT = 1536 * 1024**2


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    """One simulated alert as a Kafka record's value (schema id 1000), and a schema dir with 1000.avsc."""
    root = tmp_path_factory.mktemp("wire")
    sim = root / "sim.avro"
    write_container(sim, simulate([100], 1, cutout_bytes=64))
    schema, records = read_container(str(sim))
    (root / "schemas").mkdir()
    (root / "schemas" / f"{SCHEMA_ID}.avsc").write_text(json.dumps(schema))
    return encode_confluent(records[0], fastavro.parse_schema(schema), SCHEMA_ID), root / "schemas"


def sparse(path: Path, head: bytes, size: int = TWO_GB) -> Path:
    """A file of ``size`` bytes that starts with ``head``, the rest a hole (no disk used)."""
    path.write_bytes(head)
    os.truncate(path, size)
    return path


def check_limited(tmp_path: Path, *args: object) -> subprocess.CompletedProcess[str]:
    """``alertfilter check`` (a filter that accepts all) as a process limited to :data:`MEMORY_LIMIT`."""
    f = tmp_path / "f.py"
    f.write_text(ALL)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    cmd = [sys.executable, "-m", "alertfilter", "check", str(f), "--json", "--alerts", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=limit, check=False)


def test_a_2gb_sparse_file_is_said_to_be_zeros_without_reading_it(tmp_path):
    path = sparse(tmp_path / "zeros.bin", b"")
    started = time.monotonic()
    r = check_limited(tmp_path, path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "MemoryError" not in r.stderr
    assert f"file {path} is not an Avro container file nor a Confluent-wire-format message" in r.stderr
    assert "2,147,483,648 bytes whose first 512 are all zero (a zeroed or sparse file, not alerts)" in r.stderr
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("with_schemas", [False, True], ids=["no-schema-source", "schema-dir"])
def test_a_2gb_file_behind_a_wire_header_is_no_message(tmp_path, wire, with_schemas):
    value, schemas = wire
    path = sparse(tmp_path / "big.bin", value[:5])
    r = check_limited(tmp_path, path, *(["--schema-dir", schemas] if with_schemas else []))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"starts like a Confluent-wire-format message (schema id {SCHEMA_ID}) but holds 2,147,483,648 bytes" in (
        r.stderr
    )
    assert f"more than any Kafka record's value ({MAX_WIRE_BYTES:,} at most): it is not one message" in r.stderr


def test_a_2gb_file_behind_an_avro_magic_says_its_header_is_unreadable(tmp_path):
    path = sparse(tmp_path / "obj.avro", b"Obj\x01")
    r = check_limited(tmp_path, path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"file {path} starts like an Avro container file but its header cannot be read" in r.stderr


def avro_long(n: int) -> bytes:
    """``n`` as Avro writes a long (zigzag varint)."""
    n, out = (n << 1) ^ (n >> 63), b""
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([byte])
        out += bytes([byte | 0x80])


def test_a_container_whose_block_claims_2gb_is_refused_without_reading_it(tmp_path, wire):
    # a real container header, then one block of one alert that claims 1.9 GB: the rest a hole
    _, schemas = wire
    head = tmp_path / "head.avro"
    with open(head, "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(json.loads((schemas / f"{SCHEMA_ID}.avsc").read_text())), [])
    path = sparse(tmp_path / "block.avro", head.read_bytes() + avro_long(1) + avro_long(1_900_000_000))
    r = check_limited(tmp_path, path)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "MemoryError" not in r.stderr, r.stderr
    assert f"file {path} is truncated or corrupt after 0 alerts" in r.stderr
    assert "it asks to read 1,900,000,000 bytes at once, more than 268,435,456: not an alert file" in r.stderr


def test_a_truncated_wire_message_says_its_body_does_not_decode(tmp_path, wire, capsys):
    value, schemas = wire
    cut = tmp_path / "cut.bin"
    cut.write_bytes(value[: len(value) // 2])
    f = tmp_path / "f.py"
    f.write_text(ALL)
    code, _, err = run(capsys, "check", f, "--alerts", cut, "--schema-dir", schemas)
    assert code == 1
    assert f"file {cut} starts like a Confluent-wire-format message (schema id {SCHEMA_ID}) but its body" in err
    assert "does not decode with that schema" in err


def test_a_named_pipe_and_a_device_are_named_not_opened(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it would block until a writer came
    f = tmp_path / "f.py"
    f.write_text(ALL)
    code, _, err = run(capsys, "check", f, "--alerts", fifo)
    assert code == 1 and f"{fifo} is a named pipe, not a file of alerts" in err
    code, _, err = run(capsys, "check", f, "--alerts", "/dev/zero")
    assert code == 1 and "/dev/zero is a character device, not a file of alerts" in err
    code, _, err = run(capsys, "report", fifo, "--out", tmp_path / "r.html")
    assert code == 1 and "is a named pipe" in err and not (tmp_path / "r.html").exists()


def test_a_directory_of_looping_and_broken_links_holds_no_file(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "self").symlink_to(d)  # a loop, were directories read recursively
    (d / "ring").symlink_to(d / "ring")  # a link to itself: ELOOP
    (d / "gone").symlink_to(tmp_path / "nothing")
    os.mkfifo(d / "pipe")
    f = tmp_path / "f.py"
    f.write_text(ALL)
    code, _, err = run(capsys, "check", f, "--alerts", d)
    assert code == 1
    assert f"directory {d} holds no file (it holds " in err and "directories are not read recursively" in err
    assert "1 directory" in err and "2 broken links" in err and "1 other entry" in err


def test_a_link_to_a_file_is_that_file(tmp_path, wire, capsys):
    value, schemas = wire
    (tmp_path / "msg").write_bytes(value)
    d = tmp_path / "d"
    d.mkdir()
    (d / "link").symlink_to(tmp_path / "msg")
    f = tmp_path / "f.py"
    f.write_text(ALL)
    code, out, err = run(capsys, "check", f, "--alerts", d, "--schema-dir", schemas, "--json")
    assert code == 0, err
    assert json.loads(out)["alerts"] == 1


def test_a_directory_of_100000_files_is_listed_in_natural_order_and_its_first_bad_file_named(tmp_path, capsys):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(100_000):
        os.close(os.open(d / f"m{i}", os.O_CREAT | os.O_WRONLY, 0o644))
    started = time.monotonic()
    files = expand([d])
    assert time.monotonic() - started < 30
    assert len(files) == 100_000 and [p.name for p in files[:3]] == ["m0", "m1", "m2"]
    assert files[9].name == "m9" and files[10].name == "m10" and files[-1].name == "m99999"
    f = tmp_path / "f.py"
    f.write_text(ALL)
    code, _, err = run(capsys, "check", f, "--alerts", d)
    assert code == 1 and f"file {d / 'm0'} is not an Avro container file" in err and "an empty file" in err
