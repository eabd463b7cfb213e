#!/usr/bin/env python3
# deploy/lab/testpeer.py — the lab's test peer (server and client) for manual demos
# with deploy/lab/lab.sh. It speaks the same protocol, stream and hash as the Rust
# harness in tests/common/peer.rs, so either side can talk to the other. Pure Python:
# fine for demos (a few MB/s), never used by the automated tests or for benchmarks.
#
# Protocol (one command byte per TCP connection, from the client):
#   'C'                      server answers 'C' and closes (connect test)
#   'U' + u64 BE n + n bytes server answers the 8-byte BE SipHash-2-4 of the n bytes,
#                            then closes
#   'D' + u64 BE n           server sends n bytes of the xorshift64 stream seeded from n,
#                            then closes
#   'H' + u16 BE ms          half-close test: server reads until the client's FIN
#                            (counting the bytes after the header), keeps its side open
#                            (CLOSE_WAIT) for ms milliseconds, then answers 'H' + the
#                            byte count (u64 BE) and closes
# UDP: every datagram to the UDP port is echoed back unchanged.
"""Lab test peer: `testpeer.py server ...` or `testpeer.py client CMD HOST PORT [N]`."""

import argparse
import socket
import struct
import sys
import threading
import time

MASK = 0xFFFFFFFFFFFFFFFF
# SipHash-2-4 key, identical to tests/common/peer.rs (HASH_K0/HASH_K1).
HASH_K0 = 0x73796E6775617264  # "synguard"
HASH_K1 = 0x6C61622070656572  # "lab peer"
STREAM_SEED_XOR = 0x9E3779B97F4A7C15
CHUNK = 64 * 1024


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & MASK


class SipHash24:
    """Streaming SipHash-2-4 with 64-bit output (same as siphasher::sip::SipHasher24)."""

    def __init__(self, k0=HASH_K0, k1=HASH_K1):
        self.v0 = k0 ^ 0x736F6D6570736575
        self.v1 = k1 ^ 0x646F72616E646F6D
        self.v2 = k0 ^ 0x6C7967656E657261
        self.v3 = k1 ^ 0x7465646279746573
        self.tail = b""
        self.length = 0

    def _round(self):
        v0, v1, v2, v3 = self.v0, self.v1, self.v2, self.v3
        v0 = (v0 + v1) & MASK
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & MASK
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & MASK
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & MASK
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
        self.v0, self.v1, self.v2, self.v3 = v0, v1, v2, v3

    def _block(self, m):
        self.v3 ^= m
        self._round()
        self._round()
        self.v0 ^= m

    def update(self, data):
        self.length += len(data)
        data = self.tail + bytes(data)
        n = len(data) // 8
        if n:
            for m in struct.unpack_from("<%dQ" % n, data):
                self._block(m)
        self.tail = data[n * 8:]

    def digest(self):
        """The 64-bit hash of everything so far; does not change the state."""
        saved = (self.v0, self.v1, self.v2, self.v3)
        b = ((self.length & 0xFF) << 56) | int.from_bytes(self.tail, "little")
        self._block(b)
        self.v2 ^= 0xFF
        for _ in range(4):
            self._round()
        out = (self.v0 ^ self.v1 ^ self.v2 ^ self.v3) & MASK
        self.v0, self.v1, self.v2, self.v3 = saved
        return out


def stream_chunks(n):
    """The deterministic xorshift64 byte stream of length n, in chunks."""
    state = (n ^ STREAM_SEED_XOR) & MASK or 1
    left = n
    while left > 0:
        words = min(CHUNK, left + 7) // 8
        out = []
        for _ in range(words):
            state ^= (state << 13) & MASK
            state ^= state >> 7
            state ^= (state << 17) & MASK
            out.append(state)
        chunk = struct.pack("<%dQ" % words, *out)[:left]
        left -= len(chunk)
        yield chunk


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise ConnectionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += part
    return bytes(buf)


def serve_conn(conn):
    with conn:
        conn.settimeout(30)
        cmd = recv_exact(conn, 1)
        if cmd == b"C":
            conn.sendall(b"C")
        elif cmd == b"U":
            (n,) = struct.unpack(">Q", recv_exact(conn, 8))
            h = SipHash24()
            left = n
            while left:
                part = conn.recv(min(CHUNK, left))
                if not part:
                    raise ConnectionError("upload: EOF with %d bytes left" % left)
                h.update(part)
                left -= len(part)
            conn.sendall(struct.pack(">Q", h.digest()))
        elif cmd == b"D":
            (n,) = struct.unpack(">Q", recv_exact(conn, 8))
            for chunk in stream_chunks(n):
                conn.sendall(chunk)
        elif cmd == b"H":
            (hold_ms,) = struct.unpack(">H", recv_exact(conn, 2))
            conn.settimeout(30 + hold_ms / 1000.0)
            extra = 0
            while True:
                part = conn.recv(CHUNK)
                if not part:
                    break
                extra += len(part)
            time.sleep(hold_ms / 1000.0)
            conn.sendall(b"H" + struct.pack(">Q", extra))


def conn_thread(conn):
    try:
        serve_conn(conn)
    except (OSError, ConnectionError) as e:
        print("connection error: %s" % e, file=sys.stderr, flush=True)


def tcp_listener(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1024)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=conn_thread, args=(conn,), daemon=True).start()


def udp_echo(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def run_server(args):
    threads = []
    for addr in args.bind:
        for port in args.port:
            threads.append(threading.Thread(target=tcp_listener, args=(addr, port), daemon=True))
        if args.udp_port:
            threads.append(threading.Thread(target=udp_echo, args=(addr, args.udp_port), daemon=True))
    for t in threads:
        t.start()
    print("testpeer: serving TCP %s, UDP echo %s on %s" % (args.port, args.udp_port, args.bind), flush=True)
    try:
        while all(t.is_alive() for t in threads):
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    print("testpeer: a listener died", file=sys.stderr)
    return 1


def run_client(args):
    fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    start = time.monotonic()
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect((args.host, args.port))
        t_conn = time.monotonic() - start
        if args.cmd == "connect":
            s.sendall(b"C")
            ok = recv_exact(s, 1) == b"C"
            detail = "reply 'C'"
        elif args.cmd == "upload":
            s.sendall(b"U" + struct.pack(">Q", args.n))
            h = SipHash24()
            for chunk in stream_chunks(args.n):
                h.update(chunk)
                s.sendall(chunk)
            (got,) = struct.unpack(">Q", recv_exact(s, 8))
            ok = got == h.digest()
            detail = "%d bytes, hash %016x (expected %016x)" % (args.n, got, h.digest())
        elif args.cmd == "halfclose":
            hold_ms = min(args.n, 65535)
            s.sendall(b"H" + struct.pack(">H", hold_ms))
            s.shutdown(socket.SHUT_WR)
            fin_at = time.monotonic()
            s.settimeout(10 + hold_ms / 1000.0)
            reply = recv_exact(s, 9)
            held = time.monotonic() - fin_at
            eof = s.recv(1) == b""
            ok = reply == b"H" + struct.pack(">Q", 0) and eof
            detail = "server held its side %.0f ms after our FIN (asked %d ms)%s" % (
                held * 1e3, hold_ms, "" if eof else ", no EOF after the reply")
        else:
            s.sendall(b"D" + struct.pack(">Q", args.n))
            h_got, h_exp, total = SipHash24(), SipHash24(), 0
            for chunk in stream_chunks(args.n):
                h_exp.update(chunk)
            while True:
                part = s.recv(CHUNK)
                if not part:
                    break
                h_got.update(part)
                total += len(part)
            ok = total == args.n and h_got.digest() == h_exp.digest()
            detail = "%d of %d bytes, hash %s" % (total, args.n, "ok" if ok else "MISMATCH")
    elapsed = time.monotonic() - start
    print("%s %s: connect %.1f ms, total %.1f ms, %s" % (
        args.cmd, "OK" if ok else "FAILED", t_conn * 1e3, elapsed * 1e3, detail))
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="mode", required=True)
    ps = sub.add_parser("server", help="serve the lab protocol")
    ps.add_argument("--bind", action="append", required=True, help="address to bind (repeatable)")
    ps.add_argument("--port", action="append", type=int, required=True, help="TCP port (repeatable)")
    ps.add_argument("--udp-port", type=int, default=0, help="UDP echo port (0: none)")
    pc = sub.add_parser("client", help="one client operation")
    pc.add_argument("cmd", choices=["connect", "upload", "download", "halfclose"])
    pc.add_argument("host")
    pc.add_argument("port", type=int)
    pc.add_argument("n", type=int, nargs="?", default=None,
                    help="bytes for upload/download (default 1000000); "
                         "hold milliseconds for halfclose (default 2000, at most 65535)")
    args = p.parse_args()
    if args.mode == "client" and args.n is None:
        args.n = 2000 if args.cmd == "halfclose" else 1000000
    return run_server(args) if args.mode == "server" else run_client(args)


if __name__ == "__main__":
    sys.exit(main())
