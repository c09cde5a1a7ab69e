"""textvae data prepare: registry, verified downloads from a real loopback HTTP server, safe extraction,
local-source verification, the four real corpora from ../shared/data, and the synthetic corpus."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
import time
import urllib.parse
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from textvae.corpora import datasets as DS
from textvae.corpora import fetch as F
from textvae.corpora import prepare as P
from textvae.core.errors import DataError, TextvaeError

SHARED = Path(os.environ.get("TEXTVAE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
needs_shared = pytest.mark.skipif(not (SHARED / "ptb" / "ptb.train.txt").is_file(),
                                  reason=f"shared data not found at {SHARED} (set TEXTVAE_SHARED_DATA)")

FAST = dict(timeout=1.0, retries=2, backoff=0.01)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# A real HTTP server on 127.0.0.1
# ---------------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802
        srv = self.server
        path = urllib.parse.unquote(self.path.split("?")[0])
        srv.hits.append(path)
        route = srv.routes.get(path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        kind, body = route
        ctype = "text/html; charset=utf-8" if kind == "html" else "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) + (1000 if kind == "truncate" else 0)))
        self.end_headers()
        if kind in ("ok", "html"):
            self.wfile.write(body)
        elif kind == "truncate":  # promise more than is sent, then close the connection
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif kind == "stall":  # send part of the body, then go quiet
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            srv.release.wait(10)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.block_on_close = False
    srv.routes, srv.hits, srv.release = {}, [], threading.Event()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def make_tar(members: dict[str, bytes], links: dict[str, tuple[str, str]] | None = None) -> bytes:
    """A .tgz with regular ``members`` and ``links`` {name: ("sym"|"hard", target)}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def make_zip(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return buf.getvalue()


PTB_MEMBERS = {
    "./simple-examples/data/ptb.train.txt": b" the cat sat \n a dog ran far away \n",
    "./simple-examples/data/ptb.valid.txt": b" the dog sat \n",
    "./simple-examples/data/ptb.test.txt": b" a cat ran \n the <unk> sat down \n",
    "./simple-examples/data/ptb.char.train.txt": b"t h e\n",
}
PTB_ROLES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}


def ptb_spec(server, archive: bytes, archive_pin: str | None = "auto", members=PTB_MEMBERS):
    """The real PTB registry entry, served from the loopback server, with the fixture's checksums."""
    server.routes["/simple-examples.tgz"] = ("ok", archive)
    pin = DS.Pin(sha256=sha256(archive) if archive_pin == "auto" else archive_pin) if archive_pin else DS.NO_PIN
    file_pins = {role: DS.Pin(sha256=sha256(members[f"./simple-examples/data/{name}"]))
                 for role, name in PTB_ROLES.items() if f"./simple-examples/data/{name}" in members}
    return DS.with_overrides(DS.get_variant("ptb"), url_base=server.base + "/",
                            remote_pins={"simple-examples.tgz": pin}, file_pins=file_pins)


def assert_nothing_left(out: Path) -> None:
    """No output directory, no temporary directories, no partial or unverified download in the cache."""
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name != ".downloads"]
    assert leftovers == []
    cache = out.parent / ".downloads"
    assert not cache.exists() or list(cache.iterdir()) == []


def assert_one_line(exc: BaseException, *parts: str) -> str:
    msg = str(exc)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, (part, msg)
    return msg


# ---------------------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------------------


def test_good_download_then_cache(server, tmp_path):
    archive = make_tar(PTB_MEMBERS)
    spec = ptb_spec(server, archive)
    out = tmp_path / "data" / "ptb"
    stats = P.prepare("ptb", out, spec=spec, **FAST)
    assert (out / "train.txt").read_text() == "the cat sat\na dog ran far away\n"
    assert (out / "test.txt").read_text() == "a cat ran\nthe <unk> sat down\n"
    assert stats["splits"]["test"]["examples"] == 2
    assert stats["splits"]["test"]["tokens"] == 9  # 7 words + one </s> per sentence
    assert json.loads((out / "stats.json").read_text()) == stats
    assert stats["files"]["train"]["verified"].startswith("pinned sha256")
    cached = tmp_path / "data" / ".downloads" / "simple-examples.tgz"
    assert cached.read_bytes() == archive
    assert [p.name for p in cached.parent.iterdir()] == ["simple-examples.tgz"]
    # A second run re-verifies the cached archive and does not download again.
    P.prepare("ptb", out, spec=spec, **FAST)
    assert server.hits == ["/simple-examples.tgz"]
    assert sorted(p.name for p in out.parent.iterdir()) == [".downloads", "ptb"]


def test_archive_without_own_pin_is_verified_by_members(server, tmp_path):
    archive = make_tar(PTB_MEMBERS)
    spec = ptb_spec(server, archive, archive_pin=None)
    stats = P.prepare("ptb", tmp_path / "data" / "ptb", spec=spec, **FAST)
    assert stats["splits"]["train"]["examples"] == 2
    # ... and a member that differs from its pin is refused.
    bad = dict(PTB_MEMBERS)
    bad["./simple-examples/data/ptb.valid.txt"] = b" the dog sat down \n"
    server.routes["/simple-examples.tgz"] = ("ok", make_tar(bad))
    out = tmp_path / "other" / "ptb"
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out, spec=spec, **FAST)
    assert_one_line(err.value, "ptb", server.base + "/simple-examples.tgz", "ptb.valid.txt", "sha256 mismatch")
    assert_nothing_left(out)


def test_wrong_checksum(server, tmp_path):
    spec = ptb_spec(server, make_tar(PTB_MEMBERS), archive_pin="0" * 64)
    out = tmp_path / "data" / "ptb"
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out, spec=spec, **FAST)
    assert_one_line(err.value, "ptb", f"{server.base}/simple-examples.tgz", "sha256 mismatch", "0" * 64)
    assert len(server.hits) == 2  # bounded retries
    assert_nothing_left(out)


def test_truncated_transfer(server, tmp_path):
    archive = make_tar(PTB_MEMBERS)
    spec = ptb_spec(server, archive)
    server.routes["/simple-examples.tgz"] = ("truncate", archive)
    out = tmp_path / "data" / "ptb"
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out, spec=spec, **FAST)
    assert_one_line(err.value, "ptb", f"{server.base}/simple-examples.tgz", "truncated")
    assert_nothing_left(out)


def test_http_404_is_not_retried(server, tmp_path):
    spec = ptb_spec(server, b"")
    del server.routes["/simple-examples.tgz"]
    out = tmp_path / "data" / "ptb"
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out, spec=spec, **FAST)
    assert_one_line(err.value, "ptb", f"{server.base}/simple-examples.tgz", "HTTP 404")
    assert server.hits == ["/simple-examples.tgz"]
    assert_nothing_left(out)


def test_stalled_server_times_out(server, tmp_path):
    archive = make_tar(PTB_MEMBERS)
    spec = ptb_spec(server, archive)
    server.routes["/simple-examples.tgz"] = ("stall", archive)
    out = tmp_path / "data" / "ptb"
    t0 = time.monotonic()
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out, spec=spec, timeout=0.5, retries=2, backoff=0.01)
    assert time.monotonic() - t0 < 5
    assert_one_line(err.value, "ptb", f"{server.base}/simple-examples.tgz", "timed out")
    assert len(server.hits) == 2
    assert_nothing_left(out)


def test_html_page_instead_of_archive(server, tmp_path):
    spec = ptb_spec(server, b"<html>quota exceeded</html>")
    server.routes["/simple-examples.tgz"] = ("html", b"<html>quota exceeded</html>")
    out = tmp_path / "data" / "ptb"
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out, spec=spec, **FAST)
    assert_one_line(err.value, "ptb", "/simple-examples.tgz", "HTML page")
    assert_nothing_left(out)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "hardlink", "zip-dotdot", "zip-symlink"])
def test_unsafe_archive_is_refused(server, tmp_path, case):
    members = dict(PTB_MEMBERS)
    links = {}
    if case == "dotdot":
        members["simple-examples/../../evil.txt"] = b"owned\n"
    elif case == "absolute":
        members["/tmp/evil.txt"] = b"owned\n"
    elif case == "symlink":
        links["simple-examples/data/link.txt"] = ("sym", "/etc/passwd")
    elif case == "hardlink":
        links["simple-examples/data/hard.txt"] = ("hard", "/etc/passwd")
    if case.startswith("zip"):
        zmembers = {k.lstrip("./"): v for k, v in PTB_MEMBERS.items()}
        if case == "zip-dotdot":
            zmembers["../evil.txt"] = b"owned\n"
        archive = make_zip(zmembers, {"simple-examples/data/link.txt": "/etc/passwd"} if case == "zip-symlink" else None)
        var = DS.get_variant("ptb")
        var = replace(var, remotes=(replace(var.remotes[0], name="simple-examples.zip", kind="zip"),))
        server.routes["/simple-examples.zip"] = ("ok", archive)
        spec = DS.with_overrides(var, url_base=server.base, remote_pins={"simple-examples.zip": DS.Pin(sha256=sha256(archive))})
        url = f"{server.base}/simple-examples.zip"
    else:
        archive = make_tar(members, links)
        spec = ptb_spec(server, archive)
        url = f"{server.base}/simple-examples.tgz"
    out = tmp_path / "data" / "ptb"
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out, spec=spec, **FAST)
    msg = assert_one_line(err.value, "ptb", url, "refusing the archive")
    assert ("link" in msg) if "link" in case else ("unsafe member" in msg)
    assert len(server.hits) == 1  # permanent: not retried
    assert_nothing_left(out)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_missing_member_is_permanent(server, tmp_path):
    members = {k: v for k, v in PTB_MEMBERS.items() if "valid" not in k}
    spec = ptb_spec(server, make_tar(members), members=members)
    out = tmp_path / "data" / "ptb"
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out, spec=spec, **FAST)
    assert_one_line(err.value, "ptb", "/simple-examples.tgz", "no member matches valid")
    assert len(server.hits) == 1
    assert_nothing_left(out)


def test_unpinned_needs_explicit_permission(server, tmp_path):
    archive = make_tar(PTB_MEMBERS)
    server.routes["/simple-examples.tgz"] = ("ok", archive)
    spec = DS.with_overrides(DS.get_variant("ptb"), url_base=server.base,
                            remote_pins={"simple-examples.tgz": DS.NO_PIN},
                            file_pins={r: DS.NO_PIN for r in PTB_ROLES})
    out = tmp_path / "data" / "ptb"
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out, spec=spec, **FAST)
    assert_one_line(err.value, "ptb", "/simple-examples.tgz", "no checksum is pinned", "--allow-unpinned")
    assert_nothing_left(out)
    stats = P.prepare("ptb", out, spec=spec, allow_unpinned=True, **FAST)
    assert stats["files"]["test"]["sha256"] == sha256(PTB_MEMBERS["./simple-examples/data/ptb.test.txt"])
    assert "unpinned" in stats["files"]["test"]["verified"]


def test_download_function_directly(server, tmp_path):
    server.routes["/f.bin"] = ("ok", b"payload")
    dest = tmp_path / "f.bin"
    F.download(f"{server.base}/f.bin", dest, dataset="demo", **FAST)
    assert dest.read_bytes() == b"payload"

    def reject(path):
        raise F.VerificationError("not what we wanted")

    with pytest.raises(DataError) as err:
        F.download(f"{server.base}/f.bin", tmp_path / "g.bin", dataset="demo", verify=reject, **FAST)
    assert_one_line(err.value, "demo", f"{server.base}/f.bin", "after 2 attempts", "not what we wanted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    with pytest.raises(DataError) as err:  # nothing listens on this port any more
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        port = srv.server_address[1]
        srv.server_close()
        F.download(f"http://127.0.0.1:{port}/x", tmp_path / "x", dataset="demo", **FAST)
    assert_one_line(err.value, "demo", f"http://127.0.0.1:{port}/x", "connection failed")


# ---------------------------------------------------------------------------------------------------------
# The real corpora through the loopback server (same download path, fixture archives)
# ---------------------------------------------------------------------------------------------------------


@needs_shared
def test_ptb_from_loopback_with_real_member_pins(server, tmp_path):
    """simple-examples.tgz rebuilt from the shared files: the registry's real member sha256 pins verify it."""
    members = {f"./simple-examples/data/{n}": (SHARED / "ptb" / n).read_bytes() for n in PTB_ROLES.values()}
    archive = make_tar(members)
    server.routes["/simple-examples.tgz"] = ("ok", archive)
    # The rebuilt archive is not byte-identical to the original (its md5 pin would fail): drop that pin only.
    spec = DS.with_overrides(DS.get_variant("ptb"), url_base=server.base,
                            remote_pins={"simple-examples.tgz": DS.NO_PIN})
    stats = P.prepare("ptb", tmp_path / "data" / "ptb", spec=spec, **FAST)
    check_ptb(stats)
    assert all("pinned sha256" in f["verified"] for f in stats["files"].values())


def _labelled_fixture_train(valid: bytes, n: int) -> bytes:
    return b"".join(valid.splitlines(keepends=True)[:n])


@needs_shared
@pytest.mark.parametrize("dataset", ["yahoo", "snli", "yelp"])
def test_authors_archives_from_loopback(server, tmp_path, dataset):
    """The authors' archive layout; real valid/test (real pins), a fixture train file (its own pin)."""
    var = DS.get_variant(dataset)
    layout = {
        "yahoo": ("yahoo_data", "yahoo", SHARED / "yahoo" / "val.txt", SHARED / "yahoo" / "test.txt"),
        "snli": ("snli_data", "snli", SHARED / "snli" / "snli.valid.txt", SHARED / "snli" / "snli.test.txt"),
        "yelp": ("short_yelp_data", "short_yelp", SHARED / "yelp" / "short_yelp_data" / "short_yelp.valid.txt",
                 SHARED / "yelp" / "short_yelp_data" / "short_yelp.test.txt"),
    }[dataset]
    folder, prefix, valid_path, test_path = layout
    valid = valid_path.read_bytes()
    train = _labelled_fixture_train(valid, 500)
    members = {f"{folder}/{prefix}.train.txt": train, f"{folder}/{prefix}.valid.txt": valid,
               f"{folder}/{prefix}.test.txt": test_path.read_bytes()}
    if dataset == "yelp":
        for n in DS.LABEL_SUBSETS:
            members[f"{folder}/{prefix}.train.{n}.txt"] = (test_path.parent / f"short_yelp.train.{n}.txt").read_bytes()
    archive = make_tar(members)
    name = var.remotes[0].name
    server.routes[f"/{name}"] = ("ok", archive)
    spec = DS.with_overrides(var, url_base=server.base, file_pins={"train": DS.Pin(sha256=sha256(train))})
    out = tmp_path / "data" / dataset
    stats = P.prepare(dataset, out, spec=spec, **FAST)
    assert stats["substitute"] is None
    assert stats["splits"]["train"]["examples"] == 500
    assert stats["splits"]["valid"]["examples"] == stats["splits"]["test"]["examples"] == 10_000
    assert stats["files"]["valid"]["verified"].startswith("pinned sha256")
    assert (out / "test.txt").read_bytes() == test_path.read_bytes()  # already normalised files pass unchanged
    if dataset == "yelp":
        assert stats["format"] == "labelled"
        assert [stats["subsets"][f"train.{n}"]["examples"] for n in DS.LABEL_SUBSETS] == list(DS.LABEL_SUBSETS)
        assert (out / "train.100.txt").is_file()


def test_shen_variant_downsamples_single_files(server, tmp_path):
    """Shen et al. yelp: six plain files (label = suffix), seeded downsample, sampled train.N subsets."""
    files = {}
    for split in ("train", "dev", "test"):
        for lab in (0, 1):
            words = "good great nice" if lab else "bad awful poor"
            files[f"sentiment.{split}.{lab}"] = "".join(
                f"{words.split()[i % 3]} {split} sentence {i}\n" for i in range(80 + 10 * lab)).encode()
    for name, data in files.items():
        server.routes[f"/{name}"] = ("ok", data)
    var = DS.get_variant("yelp", "shen2017")
    role = {"train": "train", "dev": "valid", "test": "test"}
    pins = {f"{role[n.split('.')[1]]}.{n.split('.')[2]}": DS.Pin(sha256=sha256(d)) for n, d in files.items()}
    var = replace(DS.with_overrides(var, url_base=server.base, file_pins=pins),
                  downsample=(("train", 120), ("valid", 30), ("test", 30)))
    out = tmp_path / "data" / "yelp"
    stats = P.prepare("yelp", out, spec=var, **FAST)
    assert [stats["splits"][s]["examples"] for s in DS.SPLITS] == [120, 30, 30]
    lines = (out / "train.txt").read_text().splitlines()
    assert all(line.split("\t")[0] in ("0", "1") for line in lines)
    assert all(("good" in l or "great" in l or "nice" in l) == (l[0] == "1") for l in lines)
    assert sorted(stats["subsets"]) == ["train.100"]  # sampled from the downsampled train split
    assert set((out / "train.100.txt").read_text().splitlines()) <= set(lines)
    again = P.prepare("yelp", tmp_path / "again" / "yelp", spec=var, **FAST)
    assert (tmp_path / "again" / "yelp" / "train.txt").read_bytes() == (out / "train.txt").read_bytes()
    assert again["splits"] == stats["splits"]
    other = P.prepare("yelp", tmp_path / "seed2" / "yelp", spec=var, seed=1, **FAST)
    assert (tmp_path / "seed2" / "yelp" / "train.txt").read_bytes() != (out / "train.txt").read_bytes()
    assert other["seed"] == 1


def test_snli_1_0_zip_variant(server, tmp_path):
    def record(s1, s2):
        parse = lambda s: "( " + " ".join(f"( {w} )" for w in s.split()) + " )"  # noqa: E731
        return json.dumps({"sentence1_binary_parse": parse(s1), "sentence2_binary_parse": parse(s2)}) + "\n"

    members = {}
    for split in ("train", "dev", "test"):
        rows = [record(f"A man rides {split} horse {i}", f"A person is outside {i % 3}") for i in range(20)]
        members[f"snli_1.0/snli_1.0_{split}.jsonl"] = "".join(rows).encode()
    archive = make_zip(members)
    server.routes["/snli_1.0.zip"] = ("ok", archive)
    var = DS.with_overrides(DS.get_variant("snli", "snli1.0"), url_base=server.base,
                           remote_pins={"snli_1.0.zip": DS.Pin(sha256=sha256(archive))})
    var = replace(var, downsample=(("train", 10),))
    out = tmp_path / "data" / "snli"
    stats = P.prepare("snli", out, spec=var, **FAST)
    # 20 distinct premises + 3 distinct hypotheses per split; train downsampled to 10.
    assert [stats["splits"][s]["examples"] for s in DS.SPLITS] == [10, 23, 23]
    assert "a person is outside 0" in (out / "valid.txt").read_text().splitlines()
    assert stats["files"]["train"]["verified"].startswith("covered by the verified archive")


# ---------------------------------------------------------------------------------------------------------
# Local sources
# ---------------------------------------------------------------------------------------------------------


def check_ptb(stats):
    sp = stats["splits"]
    assert [sp[s]["examples"] for s in DS.SPLITS] == [42_068, 3_370, 3_761]
    assert sp["test"]["tokens"] == 82_430 and sp["test"]["words"] == 78_669
    assert sp["train"]["tokens"] == 929_589
    assert stats["vocabulary"] == 9_999 and stats["vocab_size"] == 10_002
    assert sp["valid"]["oov_words"] == sp["test"]["oov_words"] == 0


@needs_shared
def test_ptb_from_shared(tmp_path):
    out = tmp_path / "data" / "ptb"
    stats = P.prepare("ptb", out, source=SHARED / "ptb")
    check_ptb(stats)
    assert stats["substitute"] is None
    lines = (out / "test.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3_761 and sum(len(l.split()) + 1 for l in lines) == 82_430
    assert lines[0] == lines[0].strip()  # normalised: single spaces, no leading space
    # The shared root (holding ptb/) works too.
    check_ptb(P.prepare("ptb", tmp_path / "root" / "ptb", source=SHARED))


@needs_shared
@pytest.mark.parametrize("dataset,train,valid,test", [
    ("yahoo", 8_000, 2_000, 10_000),
    ("snli", 8_000, 2_000, 10_000),
    ("yelp", 10_000, 10_000, 10_000),
])
def test_partial_corpora_from_shared_use_documented_substitutes(tmp_path, dataset, train, valid, test):
    out = tmp_path / "data" / dataset
    stats = P.prepare(dataset, out, source=SHARED / dataset)
    assert [stats["splits"][s]["examples"] for s in DS.SPLITS] == [train, valid, test]
    assert stats["substitute"] and "train" in stats["substitute"]
    assert stats["splits"]["train"]["note"].startswith("substitute:")
    tr = set((out / "train.txt").read_text(encoding="utf-8").splitlines())
    va = (out / "valid.txt").read_text(encoding="utf-8").splitlines()
    te = (out / "test.txt").read_text(encoding="utf-8").splitlines()
    if dataset != "yelp":
        assert len(tr) + len(set(va)) >= 9_990  # the valid file was split, not copied (few duplicate lines)
        assert len(tr & set(va)) < 50
    if dataset == "yelp":
        assert stats["format"] == "labelled"
        assert all(line.split("\t")[0] in ("0", "1") for line in te)
        for n in DS.LABEL_SUBSETS:
            assert len((out / f"train.{n}.txt").read_text().splitlines()) == n
    else:
        assert stats["format"] == "plain"
    # With substitutes disabled the missing file is named.
    with pytest.raises(DataError) as err:
        P.prepare(dataset, tmp_path / "strict" / dataset, source=SHARED / dataset, substitutes=False)
    assert_one_line(err.value, dataset, "missing train file in", str(SHARED / dataset), "substitutes are disabled")


@needs_shared
def test_local_pin_mismatch_names_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in PTB_ROLES.values():
        (src / name).write_bytes((SHARED / "ptb" / name).read_bytes())
    with open(src / "ptb.test.txt", "ab") as fh:
        fh.write(b" one more line \n")
    out = tmp_path / "data" / "ptb"
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out, source=src)
    assert_one_line(err.value, "ptb", str(src / "ptb.test.txt"), "sha256 mismatch")
    assert_nothing_left(out)


@needs_shared
def test_local_archive_source(tmp_path):
    """A pre-downloaded archive given as --source goes through the archive verification."""
    members = {f"./simple-examples/data/{n}": (SHARED / "ptb" / n).read_bytes() for n in PTB_ROLES.values()}
    arc = tmp_path / "simple-examples.tgz"
    arc.write_bytes(make_tar(members))
    out = tmp_path / "data" / "ptb"
    # The real registry pins the original archive's md5, which a rebuilt archive does not have ...
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out, source=arc)
    assert_one_line(err.value, "ptb", str(arc), "md5 mismatch", "30177ea32e27c525793142b6bf2c8e2d")
    assert_nothing_left(out)
    # ... without that pin its members are checked against their own sha256 pins ...
    spec = DS.with_overrides(DS.get_variant("ptb"), remote_pins={"simple-examples.tgz": DS.NO_PIN})
    check_ptb(P.prepare("ptb", out, source=arc, spec=spec))
    # ... and an unsafe member is refused before anything is extracted.
    members["../escape.txt"] = b"x\n"
    arc.write_bytes(make_tar(members))
    out2 = tmp_path / "other" / "ptb"
    with pytest.raises(DataError) as err:
        P.prepare("ptb", out2, source=arc, spec=spec)
    assert_one_line(err.value, "ptb", str(arc), "unsafe member", "../escape.txt")
    assert_nothing_left(out2)


def _unpinned_yelp():
    var = DS.get_variant("yelp")
    return replace(var, files=tuple(replace(f, pin=DS.NO_PIN) for f in var.files))


def _yelp_dir(tmp_path, valid: bytes) -> Path:
    src = tmp_path / "yelpsrc"
    src.mkdir()
    (src / "short_yelp.train.txt").write_bytes(b"1\tgreat food\n0\tbad service\n")
    (src / "short_yelp.valid.txt").write_bytes(valid)
    (src / "short_yelp.test.txt").write_bytes(b"1\tnice place\n")
    return src


@pytest.mark.parametrize("case,valid,expect", [
    ("empty", b"", ["short_yelp.valid.txt", "empty"]),
    ("undecodable", b"1\tgood\n0\tok\n1\tbad \xff\xfe bytes\n", ["short_yelp.valid.txt:3:", "undecodable"]),
    ("no-tab", b"1\tgood\n0 no tab here\n", ["short_yelp.valid.txt:2:", "no TAB"]),
    ("empty-label", b"1\tgood\n\tlabel missing\n", ["short_yelp.valid.txt:2:", "label"]),
])
def test_bad_local_files_name_file_and_line(tmp_path, case, valid, expect):
    src = _yelp_dir(tmp_path, valid)
    out = tmp_path / "data" / "yelp"
    with pytest.raises(DataError) as err:
        P.prepare("yelp", out, source=src, spec=_unpinned_yelp(), allow_unpinned=True)
    assert_one_line(err.value, *expect)
    assert_nothing_left(out)


def test_missing_local_files(tmp_path):
    src = _yelp_dir(tmp_path, b"1\tgood\n")
    (src / "short_yelp.valid.txt").unlink()
    out = tmp_path / "data" / "yelp"
    with pytest.raises(DataError) as err:
        P.prepare("yelp", out, source=src, spec=_unpinned_yelp(), allow_unpinned=True)
    assert_one_line(err.value, "yelp", f"missing valid file in {src}", "short_yelp.valid.txt")
    with pytest.raises(DataError) as err:
        P.prepare("yelp", out, source=tmp_path / "nowhere")
    assert_one_line(err.value, "yelp", str(tmp_path / "nowhere"), "does not exist")
    assert_nothing_left(out)


def test_failed_prepare_keeps_previous_output(tmp_path):
    src = _yelp_dir(tmp_path, b"1\tgood\n")
    out = tmp_path / "data" / "yelp"
    P.prepare("yelp", out, source=src, spec=_unpinned_yelp(), allow_unpinned=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (src / "short_yelp.valid.txt").write_bytes(b"1\tgood\n0 broken\n")
    with pytest.raises(DataError):
        P.prepare("yelp", out, source=src, spec=_unpinned_yelp(), allow_unpinned=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["yelp"]


def test_git_blob_digest():
    import tempfile

    with tempfile.NamedTemporaryFile() as fh:
        assert F.file_digests(fh.name)["git_blob"] == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # empty blob
        fh.write(b"hello\n")
        fh.flush()
        assert F.file_digests(fh.name)["git_blob"] == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_registry_is_complete():
    for ds in ("ptb", "yahoo", "snli", "yelp"):
        for var in DS.REGISTRY[ds].values():
            assert var.dataset == ds
            for f in var.files:
                assert var.remote(f.remote) in var.remotes
                assert f.pin.pinned or var.remote(f.remote).pin.pinned, (ds, var.name, f.role)
            for r in var.remotes:
                assert r.url and r.url.startswith(("http://", "https://"))
            roles = {f.role for f in var.files}
            for sub in var.substitutes:
                assert sub.source_role in roles and sub.text


# ---------------------------------------------------------------------------------------------------------
# The synthetic corpus and the CLI
# ---------------------------------------------------------------------------------------------------------


def test_synthetic_default_is_deterministic(tmp_path):
    t0 = time.monotonic()
    a = P.prepare("synthetic", tmp_path / "a" / "synthetic")
    assert time.monotonic() - t0 < 20
    P.prepare("synthetic", tmp_path / "b" / "synthetic")
    fa = sorted((tmp_path / "a" / "synthetic").iterdir())
    fb = sorted((tmp_path / "b" / "synthetic").iterdir())
    assert [p.name for p in fa] == [p.name for p in fb]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb))
    sp = a["splits"]
    assert [sp[s]["examples"] for s in DS.SPLITS] == [20_000, 2_000, 2_000]
    assert 300 <= a["vocabulary"] <= 2_000
    for s in DS.SPLITS:
        assert sp[s]["min_length"] >= 6 and sp[s]["max_length"] <= 20
        assert set(sp[s]["labels"]) == {"0", "1"}  # the label is the sentiment
        assert min(sp[s]["labels"].values()) > 0.45 * sp[s]["examples"]
    assert sp["valid"]["oov_words"] < 20
    out = tmp_path / "a" / "synthetic"
    assert len((out / "train.factors.jsonl").read_text().splitlines()) == 20_000
    labels = [line.split("\t")[0] for line in (out / "train.txt").read_text().splitlines()]
    factors = [json.loads(l) for l in (out / "train.factors.jsonl").read_text().splitlines()]
    meta = json.loads((out / "factors.json").read_text())
    assert meta["label_factor"] == "sentiment" == a["label"]
    assert all(meta["labels"][l] == f["sentiment"] for l, f in zip(labels, factors))
    assert {f["topic"] for f in factors} == set(meta["factors"]["topic"])
    for n in DS.LABEL_SUBSETS:
        assert len((out / f"train.{n}.txt").read_text().splitlines()) == n


def test_synthetic_seed_and_sizes(tmp_path):
    a = P.prepare("synthetic", tmp_path / "a", examples=(300, 50, 50), seed=1)
    b = P.prepare("synthetic", tmp_path / "b", examples=(600, 50, 50), seed=1)
    c = P.prepare("synthetic", tmp_path / "c", examples=(300, 50, 50), seed=2)
    assert a["splits"]["train"]["examples"] == 300
    # valid/test do not depend on the training size; a different seed changes everything
    assert (tmp_path / "a" / "valid.txt").read_bytes() == (tmp_path / "b" / "valid.txt").read_bytes()
    assert (tmp_path / "a" / "train.txt").read_bytes() != (tmp_path / "c" / "train.txt").read_bytes()
    assert "train.500.txt" not in {p.name for p in (tmp_path / "a").iterdir()}
    assert c["seed"] == 2


def test_factors_shape_words_across_the_sentence():
    """Each factor makes its marker words several times more frequent (a cheap sanity check)."""
    from textvae.corpora import synthetic

    corpus = synthetic.generate(seed=5, sizes={"train": 3000})["train"]
    markers = [("sentiment", "positive", "great"), ("sentiment", "negative", "terrible"),
               ("sentiment", "positive", "happy"), ("sentiment", "negative", "never"),
               ("tense", "future", "will"), ("tense", "past", "yesterday"), ("tense", "present", "is"),
               ("subject", "he", "his"), ("subject", "we", "our"), ("subject", "she", "she"),
               ("topic", "food", "kitchen"), ("topic", "garden", "flowers")]
    for factor, value, word in markers:
        inside = [word in ex.tokens for ex in corpus if ex.factors[factor] == value]
        outside = [word in ex.tokens for ex in corpus if ex.factors[factor] != value]
        assert sum(inside) / len(inside) > 4 * sum(outside) / len(outside) + 0.01, (factor, value, word)


def test_sentence_ends_show_the_label_more_often_than_the_tense():
    """grammar-v3's point (docs/data.md): an LSTM encoder's final state summarises the end of a sentence, so
    the label (sentiment) must be what the last words show most; under grammar-v2 the time adverbial was."""
    from textvae.corpora import synthetic

    corpus = synthetic.generate(seed=5, sizes={"train": 3000})["train"]
    tags = {w for lex in synthetic._LEXICON.sent.values() for tag in lex["tags"] for w in tag}
    times = {w for adverbials in synthetic._TIME.values() for phrase in adverbials for w in phrase.split()}
    ends = [ex.tokens[-4:-1] for ex in corpus]  # the three words before the final mark
    shows_label = sum(any(w in tags for w in end) for end in ends) / len(ends)
    shows_tense = sum(any(w in times for w in end) and not any(w in tags for w in end) for end in ends) / len(ends)
    assert shows_label > 0.7 and shows_label > 2 * shows_tense, (shows_label, shows_tense)


def test_cli(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="textvae")
    P.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "prepare", "synthetic", "--out", str(tmp_path / "syn"),
                              "--examples", "200,20,20", "--seed", "3"])
    assert args.func(args) == 0
    assert json.loads((tmp_path / "syn" / "stats.json").read_text())["splits"]["train"]["examples"] == 200
    assert P.main(["data", "prepare", "ptb", "--source", str(tmp_path / "missing"),
                   "--out", str(tmp_path / "ptb")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ptb: source ") and "does not exist" in err[-1]
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "prepare", "synthetic", "--examples", "1,2"])
    assert issubclass(DataError, TextvaeError)


@needs_shared
def test_cli_url_base_uses_the_real_pins(server, tmp_path, capsys):
    """`--url-base` serves the registry's files from a mirror; the real pins still apply."""
    members = {f"./simple-examples/data/{n}": (SHARED / "ptb" / n).read_bytes() for n in PTB_ROLES.values()}
    server.routes["/simple-examples.tgz"] = ("ok", make_tar(members))  # not the original bytes: md5 differs
    out = tmp_path / "data" / "ptb"
    argv = ["data", "prepare", "ptb", "--url-base", server.base, "--out", str(out), "--timeout", "1",
            "--retries", "1"]
    assert P.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ptb: download of ") and f"{server.base}/simple-examples.tgz" in err
    assert "md5 mismatch" in err
    assert_nothing_left(out)
