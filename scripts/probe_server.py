#!/usr/bin/env python3
"""A hostile-load probe of a running `veil serve` on this machine (loopback only).

    scripts/probe_server.py --port PORT --pid PID [--slow 1000] [--upload-gib 1]

Measures, and prints as one JSON object:
  - slow: how long a normal GET /v1/models takes while SLOW connections are open, half of
    them idle and half dripping an unfinished request head;
  - headers: what the server does with a 410 MiB request head, and its resident memory
    before and after;
  - uploads: three key uploads declaring UPLOAD_GIB GiB each, sent at once: the answers and
    the server's peak resident memory (VmHWM) while they run.
Every loop is bounded in count and time. Standard library only.
"""
import argparse
import json
import socket
import threading
import time


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_head(s, limit=65536):
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < limit:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        return data.decode("latin-1") + f" [{e.__class__.__name__}]"
    return data.decode("latin-1")


def status_of(head):
    parts = head.split(" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def get_models_ms(port):
    t0 = time.monotonic()
    s = connect(port)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
    head = read_head(s)
    s.close()
    return (time.monotonic() - t0) * 1000, status_of(head)


def probe_slow(port, count):
    held = []
    for i in range(count):
        s = connect(port)
        if i % 2:
            s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: probe\r\nX-Drip: a")
        held.append(s)
    times, statuses = [], []
    for _ in range(20):
        ms, status = get_models_ms(port)
        times.append(ms)
        statuses.append(status)
    for s in held:
        s.close()
    times.sort()
    return {"connections": count, "normal_get_ms_p50": round(times[len(times) // 2], 2),
            "normal_get_ms_max": round(times[-1], 2), "statuses": sorted(set(statuses))}


def probe_headers(port, pid, total_mib=410):
    before = rss_kib(pid)
    s = connect(port, timeout=30)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: probe\r\n")
    line = b"X-Flood: " + b"f" * 1000 + b"\r\n"
    sent, refused_at = 0, None
    deadline = time.monotonic() + 60
    try:
        while sent < total_mib << 20 and time.monotonic() < deadline:
            s.sendall(line * 64)
            sent += len(line) * 64
    except OSError:
        refused_at = sent
    head = read_head(s)
    s.close()
    time.sleep(0.5)
    return {"header_bytes_offered_mib": total_mib, "sent_before_close_kib": (refused_at or sent) >> 10,
            "status": status_of(head), "rss_before_mib": before >> 10, "rss_after_mib": rss_kib(pid) >> 10}


def probe_uploads(port, pid, gib, parallel=3):
    length = gib << 30
    results = [None] * parallel
    peak = [rss_kib(pid)]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.05)

    def upload(i):
        s = connect(port, timeout=120)
        s.sendall(f"POST /v1/models/probe/keys HTTP/1.1\r\nHost: probe\r\nContent-Type: application/octet-stream\r\n"
                  f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode())
        head = read_head(s)
        if status_of(head) == 100:
            chunk = b"\0" * (1 << 20)
            try:
                for _ in range(length >> 20):
                    s.sendall(chunk)
                head = read_head(s)
            except OSError as e:
                head = f"[{e.__class__.__name__} while sending]"
        results[i] = status_of(head) or head[:80]
        s.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    t0 = time.monotonic()
    threads = [threading.Thread(target=upload, args=(i,)) for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    stop.set()
    watcher.join()
    return {"uploads": parallel, "declared_gib_each": gib, "answers": results,
            "seconds": round(time.monotonic() - t0, 1), "rss_peak_mib": peak[0] >> 10}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--slow", type=int, default=1000)
    ap.add_argument("--upload-gib", type=int, default=1)
    a = ap.parse_args()
    out = {"slow": probe_slow(a.port, a.slow), "headers": probe_headers(a.port, a.pid),
           "uploads": probe_uploads(a.port, a.pid, a.upload_gib)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
