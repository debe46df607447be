#!/usr/bin/env python3
"""Load and crash runs of the field service (`aads-edge run`).

By default the synthetic diagnoser (AADS_FAKE_DIAGNOSER=1) serves: it never decodes pixels, so these runs measure
the service itself: spool intake, hashing, the durable journal (one fsync per image), moves, metrics. Only the
test build (.build/debug/aads-edge, `swift build`) has the synthetic diagnoser, so these runs use it.
With --bundle DIR the bundle is installed into a temporary slot store and the real pipeline diagnoses real JPEGs
(the bundle's golden images, each made unique by bytes after its end-of-image marker), with the device binary
when it is built.

    python3 tools/bench_service.py                # load: N images dropped as fast as possible while it runs
    python3 tools/bench_service.py --kill         # kill -9 at random moments, restart until done, verify rows

Load prints throughput and resident memory (sampled from /proc) after warm-up vs at the end.
Both modes verify from the SQLite journal that every image has exactly one result row.
"""
import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))


def binary():
    # The synthetic diagnoser is compiled into the test build only; release and device builds ignore it.
    builds = (".build-device/release/aads-edge", ".build/release/aads-edge", ".build/debug/aads-edge")
    for sub in builds if BUNDLE else builds[-1:]:
        path = os.path.join(ROOT, sub)
        if os.access(path, os.X_OK):
            return path
    sys.exit("aads-edge is not built (tools/build-device)" if BUNDLE else
             "the test build .build/debug/aads-edge is not built (swift build)")


BUNDLE = None
JPEGS = []


def setup(tmp):
    spool = os.path.join(tmp, "spool")
    os.makedirs(spool)
    config = os.path.join(tmp, "device.json")
    with open(config, "w") as f:
        json.dump({"state_dir": os.path.join(tmp, "state"), "gpio": {"backend": "off"},
                   "queue": {"capacity": 1000000, "poll_interval_ms": 200}, "metrics": {"interval_s": 1}}, f)
    args = [binary(), "run", "--config", config, "--spool", spool, "--journal", os.path.join(tmp, "results.sqlite"),
            "--metrics-file", os.path.join(tmp, "aads.prom")]
    env = dict(os.environ, AADS_LOG_LEVEL="warning")
    env.pop("NOTIFY_SOCKET", None)
    if BUNDLE:
        slots = os.path.join(tmp, "slots")
        subprocess.run([binary(), "slot", "install", BUNDLE, "--root", slots, "--trusted",
                        os.path.join(ROOT, "firmware-config/keys")], check=True, stdout=subprocess.DEVNULL)
        args += ["--root", slots]
    else:
        env["AADS_FAKE_DIAGNOSER"] = "1"
    return spool, args, env


def drop(spool, i):
    if JPEGS:
        with open(JPEGS[i % len(JPEGS)], "rb") as f:
            data = f.read() + f"image {i}".encode()
    else:
        data = (f"image {i} " + "x" * 2000).encode()
    tmp = os.path.join(spool, f".tmp-{i}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(spool, f"img-{i:06d}.jpg"))
    return hashlib.sha256(data).hexdigest()


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def verify(tmp, shas):
    db = sqlite3.connect(os.path.join(tmp, "results.sqlite"))
    rows = db.execute("SELECT image_sha256, COUNT(*) FROM results GROUP BY image_sha256").fetchall()
    counts = dict(rows)
    lost = [s for s in shas if s not in counts]
    dup = [s for s, n in counts.items() if n != 1]
    total = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    left = [n for n in os.listdir(os.path.join(tmp, "spool")) if n.endswith(".jpg")]
    print(f"rows {total}, images {len(shas)}, lost {len(lost)}, duplicated {len(dup)}, left in spool {len(left)}")
    return not lost and not dup and total == len(shas) and not left


def load(n):
    with tempfile.TemporaryDirectory() as tmp:
        spool, args, env = setup(tmp)
        proc = subprocess.Popen(args, env=env)
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                r = rss_kb(proc.pid)
                if r:
                    samples.append((time.monotonic(), r))
                time.sleep(0.1)

        t = threading.Thread(target=sample)
        t.start()
        time.sleep(0.5)
        start = time.monotonic()
        shas = [drop(spool, i) for i in range(n)]
        produced = time.monotonic()
        db_path = os.path.join(tmp, "results.sqlite")
        while True:
            try:
                done = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.Error:
                done = 0
            if done >= n:
                break
            time.sleep(0.05)
        end = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait()
        stop.set()
        t.join()
        during = [r for (ts, r) in samples if start <= ts <= end]
        warm = during[len(during) // 5] if during else 0
        last = during[-1] if during else 0
        print(f"{n} images: produced in {produced - start:.2f} s, all journaled after {end - start:.2f} s "
              f"-> {n / (end - start):.1f} images/s (one fsync'd SQLite commit each)")
        print(f"RSS after warm-up {warm / 1024:.1f} MiB, at the end {last / 1024:.1f} MiB, "
              f"growth {100 * (last - warm) / max(1, warm):+.1f}%  (SIGTERM exit status {code})")
        if during:
            trajectory = [during[min(len(during) - 1, len(during) * k // 10)] / 1024 for k in range(11)]
            print("RSS by tenths of the run (MiB): " + " ".join(f"{r:.1f}" for r in trajectory))
        ok = verify(tmp, shas) and code == 0
        print("OK" if ok else "FAILED")
        return ok


def kill_run(n, seed):
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        spool, args, env = setup(tmp)
        env["AADS_FAKE_DELAY_MS"] = "1"
        shas = [drop(spool, i) for i in range(n)]
        kills = 0
        while True:
            proc = subprocess.Popen(args + ["--exit-when-idle"], env=env)
            try:
                code = proc.wait(timeout=0.03 + rng.random() * 0.3)
                break
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
        print(f"{n} images, {kills} kill -9 at random moments, final exit status {code}")
        ok = verify(tmp, shas) and code == 0
        print("OK" if ok else "FAILED")
        return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=None, help="images (default 3000 for load, 1000 with --kill)")
    ap.add_argument("--kill", action="store_true", help="kill -9 at random moments and restart until done")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bundle", help="serve this bundle with the real pipeline (its golden JPEGs are the input)")
    a = ap.parse_args()
    if a.bundle:
        global BUNDLE
        BUNDLE = os.path.abspath(a.bundle)
        with open(os.path.join(BUNDLE, "golden/labels.csv")) as f:
            JPEGS.extend(os.path.join(BUNDLE, line.split(",")[0]) for line in f.read().splitlines()[1:] if line)
    ok = kill_run(a.images or 1000, a.seed) if a.kill else load(a.images or 3000)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
