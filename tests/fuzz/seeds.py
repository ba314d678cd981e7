#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets' corpora (corpus/NAME/seed-*).

Each seed is a small scenario in the target's input format (see the comment
at the top of each fuzz_NAME.c); libFuzzer mutates from there. Inputs the
fuzzers found that once failed sit beside them (crash-*, named by what they
found) and stay as regression tests. Run from anywhere; rewrites only seeds.
"""
import hashlib
import hmac
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# enum pm_msg_type
(HELLO, TASK_STAT, CREATE, DESTROY, STAT, ALLOCATE, DEALLOCATE, MAP, READ,
 WRITE, COPY, SHARE, UNSHARE, EXPORT, IMPORT, RELEASE, LOCK, UNLOCK,
 SET_POLICY, NODES, DEBUG_STAT, ATTACH_KEY, ATTACH, RESOLVE, MOVE, PING_NODE,
 WINDOW, STOP, RESUME, BREAK, WHERE) = range(1, 32)


def rec(type_, body=b"", conn=0, raw=False, early=False):
    flags = conn | (2 if raw else 0) | (4 if early else 0)
    return struct.pack("<BBH", flags, type_, len(body)) + body


def h(n):  # stands for the n-th handle given
    return struct.pack("<Q", n)


def alloc(n, start, count, flags=0):
    return h(n) + struct.pack("<QII", start, count, flags)


def io(n, frame, off, length, flags=0, data=b""):
    return h(n) + struct.pack("<QQII", frame, off, length, flags) + data


HELLO_REQ = struct.pack("<II", 2, 0)

TASK = {
    "basics": [rec(HELLO, HELLO_REQ), rec(TASK_STAT), rec(CREATE),
               rec(ALLOCATE, alloc(0, 0, 8)),
               rec(MAP, h(0) + struct.pack("<QII", 0, 8, 3)),
               rec(WRITE, io(0, 0, 100, 300, data=b"x" * 300)),
               rec(READ, io(0, 0, 0, 4096)), rec(STAT, h(0)),
               rec(DEALLOCATE, h(0) + struct.pack("<QII", 2, 2, 0)),
               rec(MOVE, h(0) + struct.pack("<Q", 1)),
               rec(SET_POLICY, h(0) + struct.pack("<IHH", 0, 0, 0)),
               rec(DESTROY, h(0))],
    "share": [rec(HELLO, HELLO_REQ), rec(HELLO, HELLO_REQ, conn=1),
              rec(CREATE), rec(ALLOCATE, alloc(0, 0, 4, 4)),
              rec(SHARE, h(0) + struct.pack("<Q", 1)),
              rec(EXPORT, h(1)), rec(IMPORT, bytes(32), conn=1),
              rec(LOCK, h(2) + struct.pack("<II", 10, 0), conn=1),
              rec(READ, io(2, 0, 0, 64), conn=1),
              rec(WRITE, io(0, 1, 0, 64, data=b"y" * 64)),
              rec(UNLOCK, h(2), conn=1), rec(RELEASE, h(2), conn=1),
              rec(UNSHARE, h(0) + struct.pack("<Q", 1)),
              rec(DESTROY, h(0))],
    "copy": [rec(HELLO, HELLO_REQ), rec(CREATE), rec(CREATE),
             rec(ALLOCATE, alloc(0, 0, 16)),
             rec(WRITE, io(0, 3, 0, 8, data=b"12345678")),
             rec(COPY, h(0) + struct.pack("<Q", 0) + h(1) +
                 struct.pack("<QII", 4, 16, 0)),
             rec(MAP, h(1) + struct.pack("<QII", 4, 16, 1)),
             rec(WRITE, io(1, 7, 0, 8, data=b"abcdefgh")),
             rec(READ, io(0, 3, 0, 8)), rec(STAT, h(1))],
    "fault": [rec(HELLO, HELLO_REQ), rec(ATTACH_KEY),
              rec(ATTACH, bytes(24), conn=1), rec(CREATE),
              rec(ALLOCATE, alloc(0, 0, 2)),
              rec(MAP, h(0) + struct.pack("<QII", 0, 2, 3)),
              rec(WHERE, h(0) + struct.pack("<Q", 1), conn=1),
              rec(RESOLVE, struct.pack("<QII", 1, 0, 0), conn=1),
              rec(BREAK, struct.pack("<QII", 1, 0, 0) + h(0) +
                  struct.pack("<Q", 0), conn=1),
              rec(DEALLOCATE, h(0) + struct.pack("<QII", 0, 2, 0))],
    "window": [rec(HELLO, HELLO_REQ), rec(WINDOW), rec(CREATE),
               rec(ALLOCATE, alloc(0, 0, 32)),
               rec(WRITE, io(0, 0, 0, 65536, flags=1)),
               rec(READ, io(0, 1, 5, 20000, flags=1))],
    "misc": [rec(HELLO, HELLO_REQ), rec(NODES), rec(DEBUG_STAT),
             rec(PING_NODE, struct.pack("<HHI", 1, 0, 0)),
             rec(CREATE, early=True), rec(CREATE),
             rec(32), rec(33), rec(34, bytes(16)), rec(35, bytes(16)),
             rec(36), rec(99, b"\0" * 8),
             rec(0, struct.pack("<IHHII", 0x706d6431, 1, 3, 16, 1), raw=True),
             rec(0, b"\1\2\3", raw=True)],
}


# enum pmd_nreq_type
PING, NALLOC, NFREE, FWD_IMPORT, FWD_OP, FWD_BYE, RETURN, RESET = range(1, 9)


def nrec(type_, body=b"", answer=False, raw=False):
    flags = (1 if answer else 0) | (2 if raw else 0)
    return struct.pack("<BBH", type_, flags, len(body)) + body


def slots(n, flags=0, first=0):  # FREE, RETURN: the n-th slots lent
    return struct.pack("<II", n, flags) + b"".join(
        struct.pack("<IHH", 0, first + i, 0) for i in range(n))


def fwd(task, type_, body, flags=0):
    return struct.pack("<QHHI", task, type_, flags, len(body)) + body


def tagged(n, task, cont, handle, frames):
    return (struct.pack("<IIQQQ", n, 0, task, cont, handle) +
            b"".join(struct.pack("<Q", f) for f in frames) +
            bytes(8 * (15 - len(frames))))


NODE = {
    "lend": [nrec(PING), nrec(NALLOC, struct.pack("<I", 4)),
             nrec(NFREE, slots(2)), nrec(NALLOC, struct.pack("<I", 15)),
             nrec(NFREE, slots(3, first=1))],
    "forward": [nrec(FWD_IMPORT, struct.pack("<Q", 7) + bytes(32)),
                nrec(FWD_OP, fwd(7, STAT, h(0))),
                nrec(FWD_OP, fwd(7, READ, io(0, 0, 0, 64))),
                nrec(FWD_OP, fwd(7, WRITE, io(0, 1, 8, 16, data=b"z" * 16))),
                nrec(FWD_OP, fwd(7, READ, io(0, 0, 0, 20000, flags=1) +
                                 struct.pack("<QQQ", 1, 0, 1 << 20),
                                 flags=1)),
                nrec(FWD_OP, fwd(7, MAP, h(0) + struct.pack("<QII", 0, 4, 1))),
                nrec(FWD_OP, fwd(7, LOCK, h(0) + struct.pack("<II", 5, 0))),
                nrec(FWD_OP, fwd(7, UNLOCK, h(0))),
                nrec(FWD_BYE, struct.pack("<Q", 7))],
    "tagged": [nrec(NALLOC, tagged(2, 0, 5, 9, [0, 1])),
               nrec(RETURN, slots(1)), nrec(RETURN, slots(1, flags=1, first=1)),
               nrec(NALLOC, tagged(3, 0, 5, 9, [4, 5, 6])),
               nrec(RESET)],
    "answers": [nrec(PING, struct.pack("<QQ", 1, 2), answer=True),
                nrec(NALLOC, struct.pack("<II", 1, 0) +
                     struct.pack("<QQQIHH", 1, 0, 1 << 21, 0, 0, 0),
                     answer=True),
                nrec(NFREE, answer=True), nrec(99, b"\0" * 4)],
    "raw": [nrec(PING, struct.pack("<IHH", 0x52444d50, 4, 1) + bytes(76),
                 raw=True), nrec(0, b"\1\2", raw=True),
            nrec(NALLOC, struct.pack("<I", 0)),
            nrec(NALLOC, struct.pack("<I", 16)), nrec(NFREE, slots(0))],
}


def mb(*ops):
    return b"".join(ops)


def tick(ms):
    return struct.pack("<BH", 0, ms)


DELIVER = b"\x01"


def forged(src, type_, frm, to, from_inc=0, to_inc=0):
    m = struct.pack("<IHHHHIQQ", 0x43444d50, 1, type_, frm, to, 0, from_inc,
                    to_inc) + bytes(104 - 32)
    return struct.pack("<BB", 2, src) + m


def tamper(off, x):
    return struct.pack("<BBB", 3, off, x)


MEMBERSHIP = {
    "handshake": mb(tick(100), DELIVER, DELIVER, DELIVER, tick(100), DELIVER,
                    tick(400), DELIVER, tick(2000), tick(100), DELIVER),
    "forged": mb(forged(3, 1, 3, 1), forged(3, 2, 3, 1, 5, 11),
                 forged(3, 3, 3, 1, 5, 11), forged(3, 4, 3, 1, 5, 11),
                 forged(2, 4, 3, 1), forged(0x83, 1, 3, 1), tick(200),
                 DELIVER),
    "tampered": mb(tick(100), tamper(40, 1), tick(100), DELIVER, tamper(8, 1),
                   DELIVER, tamper(20, 0xff), tick(300), tamper(90, 4),
                   DELIVER),
}

CLUSTER = {
    "plain": b"\x00[cluster]\nsecret_file = cluster.key\n"
             b"[node 1]\naddress = 127.0.0.1:7100\n"
             b"[node 2]\naddress = [::1]:7101\n",
    "full": b"\x01[cluster]\nsecret_file = /etc/pmd/cluster.key\n"
            b"transport = ofi:tcp;ofi_rxm\nheartbeat_ms = 50\n"
            b"suspect_ms = 200\ndown_ms = 900\n"
            b"[node 1]\naddress = a.example:1\n"
            b"[node 2]\naddress = b.example:65535\n"
            b"[node 3]\naddress = 10.0.0.3:7100\n",
    "bad": b"\x02[cluster]\nsecret_file = k\nheartbeat_ms = 900\n"
           b"down_ms = 100\n[node 3]\naddress = x:0\n[node 3]\n"
           b"address = y:99999\n[nod 4]\n",
}

CONFIG = {
    "plain": b"[pmd]\nsocket = /run/pmd/pmd.sock\nmemory = 64M\nguarantee = 1024\n"
             b"extra = 2048\nmax_lock_ms = 500\nstop_ms = 100\n"
             b"log_level = debug\n",
    "cluster": b"[pmd]\ncluster = @DIR@/cluster.conf\nnode_id = 2\ntransport = tcp\n"
               b"poll_us = 20\nadmission = refuse\n",
    "users": b"[pmd]\nmemory = 1G\n[user 0]\nguarantee = 10\nextra = 20\n"
             b"[user nobody]\nguarantee = 1\n",
    "bad": b"[pmd]\nmemory = 7\nnode_id = 0\nmax_lock_ms = -1\nwhat = ever\n"
           b"[user]\nguarantee\n",
}


def rreq(type_, body=b"", slot=0, wait=True):  # a request in a slot
    return struct.pack("<BBH", (slot << 4) | (0 if wait else 3), type_,
                       len(body)) + body


def rraw(data, declared, slot=0):  # the slot's message as it is
    return struct.pack("<BHH", (slot << 4) | 1, len(data), declared) + data


def rscr(what, value, slot=0):  # a scribble
    return struct.pack("<BBI", (slot << 4) | 2, what, value)


MSG_HDR = struct.pack("<IHHII", 0x31444d50, 1, TASK_STAT, 16, 1)
RING = {
    "basics": [rreq(TASK_STAT), rreq(CREATE), rreq(ALLOCATE, alloc(0, 0, 4)),
               rreq(WRITE, io(0, 0, 0, 4096, 1), slot=1),
               rreq(READ, io(0, 1, 0, 8192, 1), slot=2),
               rreq(COPY, h(0) + struct.pack("<Q", 0) + h(0) +
                    struct.pack("<QII", 2, 2, 0)),
               rreq(STAT, h(0)), rreq(DEALLOCATE, alloc(0, 0, 1)[:24]),
               rreq(DESTROY, h(0))],
    "refused": [rreq(HELLO, HELLO_REQ), rreq(MAP, alloc(0, 0, 1)),
                rreq(IMPORT, b"\0" * 48), rreq(WINDOW), rreq(40, b"\0" * 8),
                rreq(STAT, b"\1\2\3"), rreq(200)],
    "inflight": [rreq(CREATE)] + [rreq(TASK_STAT, slot=k, wait=False)
                                  for k in range(8)] + [rreq(STAT, h(0))],
    "framing": [rraw(MSG_HDR, 16), rraw(MSG_HDR, 17, slot=1),
                rraw(MSG_HDR, 5000, slot=2)],
    "scribbles": [rscr(0, 77), rscr(2, 12345), rscr(3, 9), rscr(4, 1),
                  rscr(5, 1, slot=3), rreq(TASK_STAT, slot=4),
                  rscr(0, 1, slot=4), rscr(2, 1), rreq(TASK_STAT, slot=5)],
}


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    for name, recs in TASK.items():
        write("task_request", name, b"".join(recs))
    for name, recs in NODE.items():
        write("node_request", name, b"".join(recs))
    for name, data in MEMBERSHIP.items():
        write("membership", name, data)
    for name, data in CLUSTER.items():
        write("cluster_file", name, data)
    for name, data in CONFIG.items():
        write("config_file", name, data)
    for name, recs in RING.items():
        write("ring", name, b"".join(recs))


if __name__ == "__main__":
    main()
