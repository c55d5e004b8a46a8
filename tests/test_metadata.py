"""Catalogue metadata: tags read at enrolment, CSV import all-or-nothing with bad rows named, the web edit.

Known answers by construction: the tags are written into small synthetic
WAV, FLAC and MP3 files with mutagen here; the CSV tests run on a database
folder with hand-made track records (no audio needed); the web tests on a
copy of the session's tiny catalogue (tracks pulses, chirps, chord).
"""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import soundfile as sf
from aiohttp import FormData
from synth import pattern
from test_web_fixtures import auth_headers, make_client, recognizer, settings  # noqa: F401

from audiocopy.atomic_files import atomic_write_json
from audiocopy.cli import main
from audiocopy.config import AudioParams, FeatureParams
from audiocopy.engines import catalog, metadata
from audiocopy.engines.metadata import MetadataError, TrackMeta
from audiocopy.engines.metadata_csv import export_csv, import_csv, parse_csv
from audiocopy.errors import ModelError

SR = 16000
HEADER = "track_id,title,artist,album,isrc,owner_id,rights_owner\n"


def _tone(seconds: float = 1.0) -> np.ndarray:
    return pattern("chord", seconds, SR)


@pytest.fixture
def db(tmp_path):
    """A database folder with three enrolled track ids and no metadata."""
    path = tmp_path / "db"
    catalog.create_db(path, catalog.DbInfo("fingerprint", AudioParams(), FeatureParams()))
    for tid in ("alpha", "beta", "gamma"):
        atomic_write_json(path / catalog.TRACKS_DIR / (catalog.track_filename(tid) + ".json"), {"track_id": tid})
    return path


# --------------------------------------------------------------------------
# tags


def test_tags_of_wav_flac_and_mp3_are_read(tmp_path):
    from mutagen.easyid3 import EasyID3
    from mutagen.flac import FLAC
    from mutagen.id3 import TALB, TIT2, TPE1, TPUB, TSRC
    from mutagen.wave import WAVE

    wav, flac, mp3 = tmp_path / "a.wav", tmp_path / "b.flac", tmp_path / "c.mp3"
    sf.write(wav, _tone(), SR)
    tags = WAVE(wav)
    tags.add_tags()
    for frame in (TIT2(encoding=3, text="Wave Song"), TPE1(encoding=3, text="Wave Band"),
                  TALB(encoding=3, text="Wave Album"), TSRC(encoding=3, text="us-rc1-76-07839"),
                  TPUB(encoding=3, text="Wave Records")):
        tags.tags.add(frame)
    tags.save()
    sf.write(flac, _tone(), SR)
    tags = FLAC(flac)
    tags["title"], tags["artist"], tags["label"] = "Flac Song", ["One", "Two"], "Flac Label"
    tags.save()
    sf.write(mp3, _tone(), SR, format="MP3")
    tags = EasyID3()
    tags["title"], tags["artist"], tags["copyright"] = "Mp3 Song", "Mp3 Singer", "2024 Mp3 Music"
    tags.save(mp3)

    assert metadata.read_tags(wav) == TrackMeta("Wave Song", "Wave Band", "Wave Album", "USRC17607839", "",
                                                "Wave Records", origin="tags")
    assert metadata.read_tags(flac) == TrackMeta("Flac Song", "One; Two", rights_owner="Flac Label", origin="tags")
    assert metadata.read_tags(mp3) == TrackMeta("Mp3 Song", "Mp3 Singer", rights_owner="2024 Mp3 Music",
                                                origin="tags")


def test_an_untagged_or_unreadable_file_is_titled_by_its_name_and_a_bad_tag_is_dropped(tmp_path, caplog):
    from mutagen.flac import FLAC

    plain = tmp_path / "My Track 01.wav"
    sf.write(plain, _tone(), SR)
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\x00not audio" * 20)
    bad = tmp_path / "bad.flac"
    sf.write(bad, _tone(), SR)
    tags = FLAC(bad)
    tags["title"], tags["isrc"] = "Good Title", "not-an-isrc"
    tags.save()
    assert metadata.read_tags(plain) == TrackMeta("My Track 01", origin="filename")
    assert metadata.read_tags(junk) == TrackMeta("junk", origin="filename")
    sf.write(tmp_path / "a\x01b.wav", _tone(), SR)  # a control character in a file name: made a space
    assert metadata.read_tags(tmp_path / "a\x01b.wav") == TrackMeta("a b", origin="filename")
    assert metadata.read_tags(bad) == TrackMeta("Good Title", origin="tags")
    assert "not-an-isrc" in caplog.text


def test_enrolment_fill_keeps_existing_records_and_skips_tracks_not_enrolled(db, tmp_path):
    files = []
    for name in ("alpha", "beta", "stranger"):
        files.append(tmp_path / f"{name}.wav")
        sf.write(files[-1], _tone(), SR)
    metadata.update_metadata(db, {"alpha": TrackMeta("Edited", origin="admin")})
    assert metadata.fill_from_files(db, files, ["alpha", "beta", "gamma"]) == 1
    entries = metadata.read_metadata(db)
    assert entries["alpha"].title == "Edited" and entries["beta"] == TrackMeta("beta", origin="filename")
    assert "stranger" not in entries and "gamma" not in entries
    assert metadata.fill_from_files(db, files, ["alpha", "beta"]) == 0  # nothing missing: no write


# --------------------------------------------------------------------------
# values and the file


@pytest.mark.parametrize("text, want", [("USRC17607839", "USRC17607839"), ("us-rc1-76-07839", "USRC17607839"),
                                        (" GBAYE0000351 ", "GBAYE0000351"), ("", "")])
def test_isrc_is_normalised(text, want):
    assert metadata.normalize_isrc(text) == want


@pytest.mark.parametrize("text", ["USRC1760783", "USRC176078391", "U1RC17607839", "USRC1A607839", "US RC17607839"])
def test_malformed_isrc_is_refused(text):
    with pytest.raises(ValueError, match="CC-XXX-YY-NNNNN"):
        metadata.normalize_isrc(text)


@pytest.mark.parametrize("values, word", [({"title": ""}, "title is empty"), ({"title": "x" * 301}, "longer"),
                                          ({"title": "a\x00b"}, "control"), ({"title": 5}, "must be text"),
                                          ({"title": "t", "isrc": "XX"}, "ISRC")])
def test_bad_values_are_refused(values, word):
    with pytest.raises(MetadataError, match=word):
        metadata.make_meta(values, origin="admin")


def test_a_malformed_metadata_file_is_a_clear_error(db):
    (db / metadata.METADATA_FILE).write_text('{"format_version": 1, "tracks": [1, 2]}')
    with pytest.raises(ModelError, match="malformed"):
        metadata.read_metadata(db)
    (db / metadata.METADATA_FILE).write_text("{")
    with pytest.raises(ModelError, match="unreadable"):
        metadata.read_metadata(db)


def test_edit_changes_only_the_given_fields_and_refuses_unknown_ones(db):
    metadata.update_metadata(db, {"beta": TrackMeta("Beta", "Band", isrc="USRC17607839", origin="csv")})
    meta = metadata.edit_metadata(db, "beta", {"artist": "New Band"})
    assert meta == TrackMeta("Beta", "New Band", isrc="USRC17607839", origin="admin")
    assert metadata.edit_metadata(db, "gamma", {"artist": "G"}).title == "gamma"  # no record yet: id as the title
    with pytest.raises(MetadataError, match="unknown field"):
        metadata.edit_metadata(db, "beta", {"genre": "pop"})


# --------------------------------------------------------------------------
# CSV


def test_csv_import_replaces_listed_tracks_and_exports_back_unchanged(db, tmp_path):
    metadata.update_metadata(db, {"gamma": TrackMeta("Gamma", origin="tags")})
    src = tmp_path / "meta.csv"
    src.write_text("\ufeff" + HEADER.replace("title,artist", "artist,title")  # any column order; a BOM
                   + 'alpha,Band A,"Song, with comma",LP,us-rc1-76-07839,,Label A\n'
                   + "\n"  # blank lines are ignored
                   + "beta,B,=cmd(),,,OWN-7,\n", encoding="utf-8")
    report = import_csv(db, src)
    assert (report.rows, report.changed) == (2, 2)
    entries = metadata.read_metadata(db)
    assert entries["alpha"] == TrackMeta("Song, with comma", "Band A", "LP", "USRC17607839", "", "Label A", "csv")
    assert entries["beta"].title == "=cmd()" and entries["gamma"].title == "Gamma"
    text = export_csv(db)
    assert text.splitlines()[0] == HEADER.strip()
    assert "beta,'=cmd(),B" in text  # a formula is defused for spreadsheets...
    again = tmp_path / "again.csv"
    again.write_text(text, encoding="utf-8")
    assert import_csv(db, again).changed == 0  # ...and imports back as it was


def test_a_bad_csv_names_every_bad_line_and_imports_nothing(db, tmp_path):
    metadata.update_metadata(db, {"alpha": TrackMeta("Kept", origin="admin")})
    before = (db / metadata.METADATA_FILE).read_bytes()
    src = tmp_path / "bad.csv"
    src.write_text(HEADER
                   + "alpha,Good Row,A,,,,\n"              # line 2: fine, but must not be imported
                   + "nosuch,T,A,,,,\n"                    # line 3: unknown track id
                   + "beta,T,A,,US-XYZ,,\n"                # line 4: bad ISRC
                   + ",T,A,,,,\n"                          # line 5: missing id
                   + "gamma,T,A\n"                         # line 6: wrong number of fields
                   + "beta,,A,,,,\n"                       # line 7: empty title
                   + "alpha,Again,A,,,,\n", encoding="utf-8")  # line 8: id already given on line 2
    with pytest.raises(MetadataError) as exc:
        import_csv(db, src)
    message = str(exc.value)
    assert "nothing was imported" in message and "6 bad row(s)" in message
    for line, word in ((3, "unknown track id 'nosuch'"), (4, "ISRC"), (5, "track_id is missing"),
                       (6, "3 fields, expected 7"), (7, "title is empty"), (8, "already given on line 2")):
        assert f"line {line}: " in message and word in message.split(f"line {line}: ")[1].split("\n")[0]
    assert "line 2:" not in message
    assert (db / metadata.METADATA_FILE).read_bytes() == before


@pytest.mark.parametrize("text, word", [
    ("", "line 1: the file is empty"),
    ("track_id,title,artist\n", "line 1: wrong columns (missing album, isrc, owner_id, rights_owner)"),
    (HEADER.strip() + ",genre\n", "unknown 'genre'"),
    (HEADER.strip() + ",title\n", "repeated title"),
    (HEADER + 'alpha,"unterminated,A,,,,\n', "line"),
])
def test_bad_csv_files_are_refused_at_their_line(db, text, word):
    with pytest.raises(MetadataError, match="line"):
        parse_csv(text, {"alpha"})
    with pytest.raises(MetadataError) as exc:
        parse_csv(text, {"alpha"})
    assert word in str(exc.value)


def test_csv_file_boundaries(db, tmp_path):
    with pytest.raises(MetadataError, match="not found"):
        import_csv(db, tmp_path / "missing.csv")
    with pytest.raises(MetadataError, match="is a folder"):
        import_csv(db, tmp_path)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(HEADER.encode() + "alpha,Caf\xe9,,,,,\n".encode("latin-1"))
    with pytest.raises(MetadataError, match="not UTF-8"):
        import_csv(db, latin)
    ok = tmp_path / "ok.csv"
    ok.write_text(HEADER + "alpha,A,,,,,\n")
    with pytest.raises(ModelError, match="not found"):
        import_csv(tmp_path / "nodb", ok)


def test_metadata_commands(db, tmp_path, capsys):
    src = tmp_path / "m.csv"
    src.write_text(HEADER + "gamma,Gamma Song,Gamma Band,,,,Gamma Rights\n")
    assert main(["metadata", "import", str(db), str(src)]) == 0
    assert "imported 1 rows" in capsys.readouterr().out
    assert main(["metadata", "export", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == HEADER.strip() and out[3] == "gamma,Gamma Song,Gamma Band,,,,Gamma Rights"
    assert out[1] == "alpha,alpha,,,,,"  # no record yet: the id is the title
    src.write_text(HEADER + "nosuch,X,,,,,\n")
    assert main(["metadata", "import", str(db), str(src)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 1 bad row(s), nothing was imported") and "line 2: unknown track id" in err
    with pytest.raises(SystemExit) as exc:
        main(["metadata", "import", str(db)])  # FILE missing
    assert exc.value.code == 2


# --------------------------------------------------------------------------
# the web API (a copy of the tiny catalogue: tracks pulses, chirps, chord)


@pytest.fixture
def web_db(tiny_db, tmp_path):
    path = tmp_path / "webdb"
    shutil.copytree(tiny_db, path, ignore=shutil.ignore_patterns("dataset", "server"))
    return path


@pytest.mark.asyncio
async def test_metadata_is_read_by_anyone_and_edited_with_the_admin_token(make_client, web_db):  # noqa: F811 (a fixture)
    client = await make_client(db=web_db)
    url = "/api/catalog/tracks/chirps/metadata"
    resp = await client.get(url)
    assert resp.status == 200  # enrolment titled the untagged file by its name
    assert (await resp.json())["metadata"] == TrackMeta("chirps", origin="filename").to_json()
    (web_db / metadata.METADATA_FILE).unlink()
    no_record = (await (await client.get(url)).json())["metadata"]
    assert no_record == {**TrackMeta("chirps").to_json(), "origin": None}

    body = {"title": "Chirp Song", "artist": "The Sweeps", "isrc": "us-rc1-76-07839"}
    assert (await client.patch(url, json=body)).status == 401
    assert (await client.patch(url, json=body, headers={"Authorization": "Bearer wrong"})).status == 403
    assert (await client.patch(url, json=body, headers={**auth_headers(), "Origin": "https://evil.example"})
            ).status == 403
    resp = await client.patch(url, json=body, headers=auth_headers())
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["metadata"] == TrackMeta("Chirp Song", "The Sweeps", isrc="USRC17607839",
                                                        origin="admin").to_json()
    resp = await client.patch(url, json={"album": "Sweeps"}, headers=auth_headers())
    assert (await resp.json())["metadata"]["title"] == "Chirp Song"  # fields not sent are kept
    assert metadata.read_metadata(web_db)["chirps"].album == "Sweeps"
    assert (await (await client.get(url)).json())["metadata"]["artist"] == "The Sweeps"


@pytest.mark.asyncio
@pytest.mark.parametrize("path, kwargs, status, code", [
    ("nosuch", {"json": {"title": "x"}}, 404, "unknown_track"),
    ("chirps", {"json": {"isrc": "bad"}}, 400, "bad_metadata"),
    ("chirps", {"json": {"title": ""}}, 400, "bad_metadata"),
    ("chirps", {"json": {"genre": "pop"}}, 400, "bad_metadata"),
    ("chirps", {"json": ["title"]}, 400, "bad_metadata"),
    ("chirps", {"json": {}}, 400, "bad_metadata"),
    ("chirps", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "bad_json"),
    ("chirps", {"json": {"title": "x" * 20000}}, 413, "too_large"),
])
async def test_bad_metadata_edits_are_refused(make_client, web_db, path, kwargs, status, code):  # noqa: F811 (a fixture)
    client = await make_client(db=web_db)
    before = (web_db / metadata.METADATA_FILE).read_bytes()
    headers = {**auth_headers(), **kwargs.pop("headers", {})}
    resp = await client.patch(f"/api/catalog/tracks/{path}/metadata", headers=headers, **kwargs)
    assert resp.status == status and (await resp.json())["error"]["code"] == code
    assert (web_db / metadata.METADATA_FILE).read_bytes() == before
    assert (await client.get("/api/catalog/tracks/nosuch/metadata")).status == 404


@pytest.mark.asyncio
async def test_identify_answers_with_title_and_artist(make_client, web_db):  # noqa: F811 (a fixture)
    metadata.update_metadata(web_db, {"chirps": TrackMeta("Chirp Song", "The Sweeps", origin="csv")})
    client = await make_client(db=web_db)
    buf = io.BytesIO()
    sf.write(buf, pattern("chirps", 8.0, 22050), 22050, format="WAV", subtype="PCM_16")
    form = FormData()
    form.add_field("file", buf.getvalue(), filename="q.wav", content_type="application/octet-stream")
    data = await (await client.post("/api/identify", data=form)).json()
    assert data["match"] == "chirps" and (data["title"], data["artist"]) == ("Chirp Song", "The Sweeps")
    assert [(p["track"], p["title"], p["artist"]) for p in data["plays"]] == [("chirps", "Chirp Song", "The Sweeps")]
