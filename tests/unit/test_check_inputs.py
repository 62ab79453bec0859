"""``alertfilter check`` reads alerts as Kafka holds them: one Confluent-wire-format message per file
(schema id + body), resolved with --schema-dir or --schema-registry as the runner does, directories
of such files, and says what a file is when it is none of these."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fastavro
import pytest

from alertfilter.codecs import encode_confluent, read_container
from alertfilter.simulate import simulate, write_container

from .cli_run import run

SCHEMA_ID = 1000
ALL = "def f(alert):\n    return True\n"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 simulated alerts (lsst.alert schema: ids alertId 1..12, visits diaSource.ccdVisitId)."""
    path = tmp_path_factory.mktemp("sim") / "sim.avro"
    write_container(path, simulate([100, 101, 102], 4, cutout_bytes=64))
    return path


@pytest.fixture(scope="module")
def wire(sim: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same alerts as Kafka records' values: ``msgs/0`` ... ``msgs/11`` and ``schemas/1000.avsc``."""
    root = tmp_path_factory.mktemp("wire")
    schema, records = read_container(str(sim))
    parsed = fastavro.parse_schema(schema)
    (root / "msgs").mkdir()
    for i, rec in enumerate(records):
        (root / "msgs" / str(i)).write_bytes(encode_confluent(rec, parsed, SCHEMA_ID))
    (root / "schemas").mkdir()
    (root / "schemas" / f"{SCHEMA_ID}.avsc").write_text(json.dumps(schema))
    return root / "msgs", root / "schemas"


def check_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: object) -> tuple[int, dict[str, Any], str]:
    f = tmp_path / "f.py"
    f.write_text(ALL)
    code, out, err = run(capsys, "check", f, "--json", *args)
    return code, (json.loads(out) if out.strip() else {}), err


def test_a_wire_message_without_a_schema_source_says_which_id_and_what_to_give(tmp_path, wire, capsys):
    msgs, _ = wire
    code, res, err = check_json(capsys, tmp_path, "--alerts", msgs / "3")
    assert code == 1 and res["alerts"] == 0
    assert "MemoryError" not in err
    assert f"file {msgs / '3'} holds a Confluent-wire-format message with schema id {SCHEMA_ID}" in err
    assert "give --schema-dir or --schema-registry" in err


def test_a_wire_message_with_schema_dir_is_filtered_with_the_schemas_fields(tmp_path, wire, capsys):
    msgs, schemas = wire
    code, res, err = check_json(capsys, tmp_path, "--alerts", msgs / "3", "--schema-dir", schemas)
    assert code == 0, err
    # ids from alertId, visits from diaSource.ccdVisitId: the lsst.alert schema's, without --id-field
    assert res["accepted_ids"] == [4] and res["errors"] == 0


def test_a_directory_of_wire_messages_is_read_in_natural_order_like_the_container(tmp_path, sim, wire, capsys):
    msgs, schemas = wire
    code, from_dir, err = check_json(
        capsys, tmp_path, "--alerts", msgs, "--schema-dir", schemas, "--max-alerts-per-visit", "2"
    )
    assert code == 0, err
    _, from_file, _ = check_json(capsys, tmp_path, "--alerts", sim, "--max-alerts-per-visit", "2")
    assert from_dir["alerts"] == 12 and from_dir == from_file  # 10 after 9: natural order, same cap decisions


def test_schema_registry_resolves_wire_messages_like_the_runner(tmp_path, wire, capsys):
    from alertfilter_devstack.registry import make_handler

    msgs, schemas = wire
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(schemas))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, res, err = check_json(capsys, tmp_path, "--alerts", msgs / "0", msgs / "1", "--schema-registry", url)
        assert code == 0, err
        assert res["accepted_ids"] == [1, 2]
        other = tmp_path / "other"
        other.write_bytes(b"\x00\x00\x00\x03\xe9" + (msgs / "0").read_bytes()[5:])  # schema id 1001
        code, _, err = check_json(capsys, tmp_path, "--alerts", other, "--schema-registry", url)
        assert code == 1 and "schema id 1001" in err and "cannot be had" in err
    finally:
        server.shutdown()
        server.server_close()


def test_an_unknown_schema_id_names_the_ids_the_directory_has(tmp_path, wire, capsys):
    msgs, schemas = wire
    other = tmp_path / "m"
    other.write_bytes(b"\x00\x00\x00\x00\x07" + (msgs / "0").read_bytes()[5:])
    code, _, err = check_json(capsys, tmp_path, "--alerts", other, "--schema-dir", schemas)
    assert code == 1 and "schema id 7" in err and f"(has: {SCHEMA_ID})" in err


def test_a_record_followed_by_more_bytes_is_not_taken_for_one_message(tmp_path, wire, capsys):
    msgs, schemas = wire
    two = tmp_path / "two"
    two.write_bytes((msgs / "0").read_bytes() + (msgs / "1").read_bytes())
    code, _, err = check_json(capsys, tmp_path, "--alerts", two, "--schema-dir", schemas)
    assert code == 1 and "followed by" in err and "one message per file" in err


def test_the_first_files_are_counted_before_a_bad_one_in_a_directory(tmp_path, wire, capsys):
    msgs, schemas = wire
    d = tmp_path / "d"
    d.mkdir()
    for name in ("1", "2"):
        (d / name).write_bytes((msgs / name).read_bytes())
    (d / "3").write_text("hello")
    (d / ".hidden").write_text("not read")
    code, res, _ = check_json(capsys, tmp_path, "--alerts", d, "--schema-dir", schemas)
    assert code == 1 and res["alerts"] == 2 and res["file_error"].startswith(f"file {d / '3'} is not an Avro")


def _fits_bytes() -> bytes:
    return b"SIMPLE  =                    T" + b" " * 50 + b"END" + b" " * 2797


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "an empty file"),
        (gzip.compress(b"Obj\x01..."), "gzip-compressed data: decompress it first"),
        (_fits_bytes(), "a FITS file (an image, not an alert)"),
        (b"PAR1\x15\x04", "a Parquet file"),
        (b'{"type": "record", "name": "alert", "fields": []}', "looks like an Avro schema (.avsc)"),
        (b'{"topic": "alerts", "alert": {}}\n', "JSON text"),
        (b"diaSourceId,ra,dec\n1,2,3\n", "a text file (it starts 'diaSourceId,ra,dec')"),
        (b"\x00\x01", "too short for a Confluent-wire-format message (2 bytes"),
        (bytes([0x93, 0xFF, 0x10, 0x02, 0x88, 0x00, 0x7F, 0xEE]) * 40, "its first bytes are 93 ff 10 02 88 00 7f ee"),
    ],
)
def test_a_file_of_another_kind_is_named_for_what_it_is(tmp_path, capsys, content, words):
    junk = tmp_path / "junk"
    junk.write_bytes(content)
    code, _, err = check_json(capsys, tmp_path, "--alerts", junk)
    assert code == 1
    assert f"file {junk} is not an Avro container file nor a Confluent-wire-format message: it is " in err
    assert words in err


def test_an_empty_directory_and_a_missing_schema_dir_are_usage_errors(tmp_path, sim, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = check_json(capsys, tmp_path, "--alerts", empty)
    assert code == 1 and f"directory {empty} holds no file" in err
    code, _, err = check_json(capsys, tmp_path, "--alerts", sim, "--schema-dir", tmp_path / "nope")
    assert code == 2 and "does not exist" in err


def test_given_fields_win_over_the_schemas(tmp_path, sim, capsys):
    code, res, _ = check_json(capsys, tmp_path, "--alerts", sim, "--id-field", "diaSource.diaSourceId")
    assert code == 0 and res["accepted_ids"][:3] == [1, 2, 3]  # the simulator sets both alike
    code, res, _ = check_json(capsys, tmp_path, "--alerts", sim, "--visit-field", "diaSource.visit")
    assert res["errors_by_reason"] == {"missing-visit-field": 12}
