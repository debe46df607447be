#!/usr/bin/env python3
"""Writes Tests/Fixtures/bundles: a good signed bundle and one bad bundle per rejection rule.

Independent of the Swift code: archives come from Python's tarfile (or hand-made ustar bytes for
hostile headers), hashes from hashlib, Ed25519 signatures from `cryptography`. Keys are derived
from fixed seeds and Ed25519 signatures are deterministic, so the output is reproducible byte for byte.

    python3 tools/make-bundle-corpus.py            # regenerate the committed fixtures
"""
import hashlib
import io
import json
import os
import shutil
import tarfile
from base64 import b64encode
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

OUT = Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "bundles"


def key(name):
    seed = hashlib.sha256(b"aads-edge test key " + name.encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def raw_pub(k):
    return k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def fingerprint(k):
    return "sha256:" + hashlib.sha256(raw_pub(k)).hexdigest()


def pub_file(k, comment):
    return f"aads-ed25519 {b64encode(raw_pub(k)).decode()} {comment}\n".encode()


def payload(seed, n):
    out, x = bytearray(), hashlib.sha256(seed.encode()).digest()
    while len(out) < n:
        x = hashlib.sha256(x).digest()
        out += x
    return bytes(out[:n])


GOOD_FILES = {
    "model.bin": payload("model", 3000),
    "labels.txt": b"healthy\nrust\nblight\n",
    "config/pipeline.json": b'{"input": 224}\n',
}


def manifest(files, version="2.0.0", **extra):
    entries = [
        {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for p, d in sorted(files.items())
    ]
    obj = {"schema_version": 1, "model_version": version, "files": entries, "created_by": "make-bundle-corpus"}
    obj.update(extra)
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def signature(k, manifest_bytes, hint=True):
    text = b64encode(k.sign(manifest_bytes)).decode() + "\n"
    if hint:
        text += f"key {fingerprint(k)}\n"
    return text.encode()


def tar_bytes(members, fmt=tarfile.USTAR_FORMAT):
    """members: list of (name, data-or-None, kind, extra) in order; kind: file, dir, symlink, link, chr, fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data, kind, extra in members:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind == "file":
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "link": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE,
            }[kind]
            if kind in ("symlink", "link"):
                info.linkname = extra
            t.addfile(info)
    return buf.getvalue()


def bundle(files, man, sig, extra_members=(), fmt=tarfile.USTAR_FORMAT):
    members = [("manifest.json", man, "file", None)]
    if sig is not None:
        members.append(("manifest.sig", sig, "file", None))
    members += [(p, d, "file", None) for p, d in sorted(files.items())]
    members += list(extra_members)
    return tar_bytes(members, fmt)


def raw_header(name, size, typeflag=b"0", size_field=None, checksum_delta=0):
    """A hand-made POSIX ustar header."""
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = size_field if size_field is not None else b"%011o\0" % size
    h[136:148] = b"00000000000\0"
    h[156:157] = typeflag
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % (sum(h) + checksum_delta)
    return bytes(h)


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "trusted" / "revoked").mkdir(parents=True)
    release25, release26, stranger, old, leaked = (
        key(n) for n in ("release-2025", "release-2026", "stranger", "old-2024", "leaked-2025")
    )
    (OUT / "trusted" / "release-2025.pub").write_bytes(pub_file(release25, "release-2025"))
    (OUT / "trusted" / "release-2026.pub").write_bytes(pub_file(release26, "release-2026"))
    # Revoked two ways: a .pub under revoked/, and a fingerprint in revoked.txt (its .pub still trusted).
    (OUT / "trusted" / "revoked" / "old-2024.pub").write_bytes(pub_file(old, "old-2024"))
    (OUT / "trusted" / "leaked-2025.pub").write_bytes(pub_file(leaked, "leaked-2025"))
    (OUT / "trusted" / "revoked.txt").write_text(f"# leaked signing key\n{fingerprint(leaked)}\n")

    corpus = []

    def add(name, data, code, note, floor=None):
        (OUT / name).write_bytes(data)
        corpus.append({"file": name, "code": code, "note": note, **({"floor": floor} if floor else {})})

    man = manifest(GOOD_FILES)
    good = bundle(GOOD_FILES, man, signature(release26, man), [("config", None, "dir", None)])
    add("good.tar", good, None, "valid bundle signed by the current key")
    add("good-previous-key.tar", bundle(GOOD_FILES, man, signature(release25, man)), None,
        "valid bundle signed by the previous key (rotation: both trusted)")
    add("good-raw-signature.tar", bundle(GOOD_FILES, man, release26.sign(man)), None,
        "valid bundle whose manifest.sig holds the 64 raw signature bytes")

    add("unknown-key.tar", bundle(GOOD_FILES, man, signature(stranger, man)), "unknown_key",
        "signed by a key that is not trusted")
    add("revoked-key.tar", bundle(GOOD_FILES, man, signature(old, man)), "revoked_key",
        "signed by a key whose .pub is in revoked/")
    add("revoked-fingerprint.tar", bundle(GOOD_FILES, man, signature(leaked, man)), "revoked_key",
        "signed by a key listed in revoked.txt")
    sig = bytearray(release26.sign(man))
    sig[10] ^= 0x01
    add("bad-signature.tar", bundle(GOOD_FILES, man, b64encode(bytes(sig)) + b"\n"), "bad_signature",
        "signature bytes corrupted")
    tampered = man.replace(b'"2.0.0"', b'"2.0.1"')
    add("manifest-tampered.tar", bundle(GOOD_FILES, tampered, signature(release26, man)), "bad_signature",
        "manifest changed after signing")
    add("unsigned.tar", bundle(GOOD_FILES, man, None), "bad_signature", "no manifest.sig")
    add("garbage-signature.tar", bundle(GOOD_FILES, man, b"not a signature\n"), "bad_signature",
        "manifest.sig is not a signature")

    flipped = dict(GOOD_FILES)
    flipped["model.bin"] = bytes([GOOD_FILES["model.bin"][0] ^ 0xFF]) + GOOD_FILES["model.bin"][1:]
    add("hash-mismatch.tar", bundle(flipped, man, signature(release26, man)), "hash_mismatch",
        "a payload byte changed (same size)")
    shorter = dict(GOOD_FILES)
    shorter["labels.txt"] = GOOD_FILES["labels.txt"][:-1]
    add("size-mismatch.tar", bundle(shorter, man, signature(release26, man)), "size_mismatch",
        "a payload file is shorter than the manifest says")
    extra = dict(GOOD_FILES)
    extra["extra.bin"] = b"not listed"
    add("unlisted-file.tar", bundle(extra, man, signature(release26, man)), "unlisted_file",
        "a file the manifest does not list")
    missing = {k: v for k, v in GOOD_FILES.items() if k != "labels.txt"}
    add("missing-file.tar", bundle(missing, man, signature(release26, man)), "missing_file",
        "a listed file is missing")

    add("absolute-path.tar", bundle(GOOD_FILES, man, signature(release26, man), [("/etc/evil", b"x", "file", None)]),
        "unsafe_path", "an absolute path")
    add("dotdot-path.tar", bundle(GOOD_FILES, man, signature(release26, man), [("../evil", b"x", "file", None)]),
        "unsafe_path", "a path escaping with ..")
    evil_files = dict(GOOD_FILES)
    evil_man = manifest(evil_files)
    evil_man = evil_man.replace(b'"path": "labels.txt"', b'"path": "../labels.txt"')
    add("manifest-dotdot.tar", bundle(GOOD_FILES, evil_man, signature(release26, evil_man)), "unsafe_path",
        "a signed manifest listing ../labels.txt")
    add("symlink.tar", bundle(GOOD_FILES, man, signature(release26, man), [("link", None, "symlink", "/etc/passwd")]),
        "unsafe_entry", "a symbolic link")
    add("hardlink.tar", bundle(GOOD_FILES, man, signature(release26, man), [("hard", None, "link", "model.bin")]),
        "unsafe_entry", "a hard link")
    add("device.tar", bundle(GOOD_FILES, man, signature(release26, man), [("dev", None, "chr", None)]),
        "unsafe_entry", "a character device")
    add("fifo.tar", bundle(GOOD_FILES, man, signature(release26, man), [("pipe", None, "fifo", None)]),
        "unsafe_entry", "a FIFO")
    add("duplicate-entry.tar",
        bundle(GOOD_FILES, man, signature(release26, man), [("model.bin", GOOD_FILES["model.bin"], "file", None)]),
        "duplicate_entry", "model.bin twice")
    long_name = "deep/" + "x" * 120 + "/" + "y" * 120
    add("pax-header.tar",
        bundle(GOOD_FILES, man, signature(release26, man), [(long_name, b"x", "file", None)], fmt=tarfile.PAX_FORMAT),
        "unsupported_entry", "a pax extended header")
    add("gnu-longname.tar",
        bundle(GOOD_FILES, man, signature(release26, man), [(long_name, b"x", "file", None)], fmt=tarfile.GNU_FORMAT),
        "unsupported_entry", "a GNU long-name entry")

    huge = manifest(GOOD_FILES).replace(b'"size": 3000', b'"size": 5000000000')
    add("declared-too-large.tar", bundle(GOOD_FILES, huge, signature(release26, huge)), "too_large",
        "the manifest declares a 5 GB file")
    # A header claiming 8 GiB: refused on the declared size, not after reading.
    big = raw_header(b"big.bin", 0, size_field=b"77777777777\0") + bytes(1024)
    add("header-too-large.tar", big, "too_large", "a header declaring an 8 GiB member")

    with tarfile.open(fileobj=io.BytesIO(good)) as t:
        members = t.getmembers()
    model = next(m for m in members if m.name == "model.bin")
    last = members[-1]
    end = last.offset_data + (last.size + 511) // 512 * 512
    add("truncated-data.tar", good[: model.offset_data + model.size // 2], "truncated_archive",
        "cut in the middle of model.bin")
    add("truncated-header.tar", good[: members[1].offset + 100], "truncated_archive", "cut in the middle of a header")
    add("no-end-marker.tar", good[:end], "truncated_archive", "no end-of-archive blocks")
    add("empty.tar", b"", "truncated_archive", "zero bytes")
    add("bad-checksum.tar", raw_header(b"x.bin", 1, checksum_delta=1) + b"x" + bytes(511) + bytes(1024),
        "bad_archive", "a header whose checksum is off by one")
    add("bad-octal.tar", raw_header(b"x.bin", 1, size_field=b"0000000001a\0") + b"x" + bytes(511) + bytes(1024),
        "bad_archive", "a size field that is not octal")
    add("not-a-tar.tar", payload("noise", 2048), "bad_archive", "random bytes")

    not_json = b"{ this is not json"
    add("manifest-not-json.tar", bundle(GOOD_FILES, not_json, signature(release26, not_json)), "bad_manifest",
        "signed manifest that is not JSON")
    bad_version = manifest(GOOD_FILES, version="2.0")
    add("manifest-bad-version.tar", bundle(GOOD_FILES, bad_version, signature(release26, bad_version)),
        "bad_manifest", "model_version is not semantic versioning")
    no_manifest = tar_bytes([(p, d, "file", None) for p, d in sorted(GOOD_FILES.items())])
    add("no-manifest.tar", no_manifest, "bad_manifest", "no manifest.json")

    older = manifest(GOOD_FILES, version="1.9.9")
    add("downgrade.tar", bundle(GOOD_FILES, older, signature(release26, older)), "downgrade",
        "validly signed 1.9.9 below the committed floor 2.0.0", floor="2.0.0")
    pre = manifest(GOOD_FILES, version="2.0.0-rc.1")
    add("downgrade-prerelease.tar", bundle(GOOD_FILES, pre, signature(release26, pre)), "downgrade",
        "2.0.0-rc.1 sorts below 2.0.0 (semantic versioning precedence)", floor="2.0.0")

    listing = [{"path": m.name, "type": "directory" if m.isdir() else "file", "size": m.size} for m in members]
    (OUT / "corpus.json").write_text(json.dumps({"good_members": listing, "bundles": corpus}, indent=2) + "\n")
    print(f"wrote {len(corpus)} bundles to {OUT}")


if __name__ == "__main__":
    main()
