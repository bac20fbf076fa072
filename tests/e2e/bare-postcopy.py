#!/usr/bin/env python3
"""Post-copy between two QEMUs driven by bare QMP: no libvirt, no shim.

Used to tell whether a guest that loses memory after a post-copy migration is QEMU's doing or
ours (tests/e2e/LIBVIRT-12.8.md, "Guest memory in post-copy"): the same guest kernel and command
line as ci/e2e's scenarios, the capabilities chosen here, the switch after a fixed time.

    tests/e2e/bare-postcopy.py --qemu QEMU --guest-elf target/guest/postcopy-guest.elf \
        --runs 6 [--no-preempt] [--libvirt-caps] [--postcopy-bandwidth MIB_S] \
        [--accel tcg,thread=single] [--qemu-arg=-trace --qemu-arg=EVENT ...] \
        [--dst-qemu QEMU2 --machine pc-i440fx-10.0] [--diagnose [--dump ADDR]] [--keep DIR [--keep-all]]

Each run starts a source QEMU (the guest) and a destination QEMU (-incoming defer) on this
machine's loopback (or, with --testbed, in the two hosts of a fresh `postcopy testbed`), sets the capabilities on both (postcopy-ram and return-path; postcopy-preempt
unless --no-preempt; with --libvirt-caps also pause-before-switchover, late-block-activate and
switchover-ack, as libvirt 12.8 sets them), caps the pre-copy bandwidth, migrates, sends
migrate-start-postcopy after --switch-after seconds (and migrate-continue at pre-switchover), waits
for `completed` on both sides, then reads the destination guest's serial output for --verify
seconds. A run "verified" when the destination guest printed at least one `CHECK OK`, no `FAIL`
and no `BOOT` line (a reboot), still beat in the last second, and QEMU sent no RESET event; otherwise it "lost" memory (the line
says how). Exit status 0 when every run migrated (verified or lost: the counts are the result),
1 when a migration itself failed or hung, 2 on bad arguments.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


class Qmp:
    def __init__(self, path, deadline):
        self.events = []
        end = time.time() + deadline
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                if time.time() > end:
                    raise RuntimeError(f"cannot connect to QMP at {path}")
                time.sleep(0.05)
        self.s.settimeout(30)  # a QEMU that stops answering fails the run, it does not hang it
        self.f = self.s.makefile("rw")
        self.greeting = json.loads(self.f.readline())
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError(f"QMP closed during {name}")
            r = json.loads(line)
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise RuntimeError(f"{name}: {r['error']}")
            return r["return"]


def start_qemu(qemu, wd, side, guest, cmdline, mem, accel, extra, machine, host=None):
    argv = ([] if host is None else ["nsenter", f"--net={host}", "--"]) + [qemu, "-M", machine, "-accel", accel, "-m", str(mem), "-display", "none",
            "-nodefaults", "-no-user-config", "-kernel", guest, "-append", cmdline,
            "-serial", f"file:{wd}/{side}.serial", "-qmp", f"unix:{wd}/{side}.qmp,server=on,wait=off"]
    argv += extra
    if side == "dst":
        argv += ["-incoming", "defer"]
    return subprocess.Popen(argv, stdout=open(f"{wd}/{side}.log", "w"), stderr=subprocess.STDOUT)


def diagnose(src, dst, dst_pid, a_dump):
    """What a lost run's destination is doing: both sides' migration counters, the vCPU's
    registers twice a second apart, and where each destination thread waits in the kernel."""
    out = []
    for name, q in (("src", src), ("dst", dst)):
        m = q.cmd("query-migrate")
        ram = m.get("ram", {})
        keep = {k: ram[k] for k in ("transferred", "remaining", "total", "duplicate", "normal",
                                    "postcopy-requests", "postcopy-bytes", "dirty-sync-count",
                                    "precopy-bytes", "downtime-bytes") if k in ram}
        out.append(f"  {name} query-migrate: status {m.get('status')} ram {json.dumps(keep)}")
    for name, q in (("src", src), ("dst", dst)):
        for addr in a_dump:
            mem = q.cmd("human-monitor-command", **{"command-line": f"xp /8xw {addr}"})
            out.append(f"  {name} " + " ".join(mem.split()))
    for i in range(2):
        regs = dst.cmd("human-monitor-command", **{"command-line": "info registers"})
        out.append("  dst regs: " + " ".join(w for w in regs.split() if w.startswith(("EIP=", "EAX=", "ESI=", "EDI=", "ECX=", "EBX=", "EDX=")) or w.startswith("HLT=")))
        time.sleep(1)
    for t in sorted(os.listdir(f"/proc/{dst_pid}/task")):
        try:
            comm = open(f"/proc/{dst_pid}/task/{t}/comm").read().strip()
            wchan = open(f"/proc/{dst_pid}/task/{t}/wchan").read().strip()
            stack = open(f"/proc/{dst_pid}/task/{t}/stack").read().split("\n")[:4]
        except OSError as e:
            comm, wchan, stack = "?", str(e), []
        out.append(f"  dst task {t} {comm}: wchan {wchan}; {' | '.join(l.split()[-1] for l in stack if l)}")
    return "\n".join(out)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Testbed:
    """`postcopy testbed`: two network namespaces joined by a shaped link, held while its stdin
    stays open (docs/testbed.md)."""

    def __init__(self, postcopy, rate):
        self.p = subprocess.Popen([postcopy, "testbed", "--link-rate", str(rate)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("testbed "):
            self.p.kill()
            raise RuntimeError(f"the testbed did not come up: {line!r}")
        kv = dict(w.split("=", 1) for w in line.split()[1:])
        self.src, self.dst, self.dst_addr = kv["src_netns"], kv["dst_netns"], kv["dst_addr"]

    def close(self):
        self.p.stdin.close()
        if self.p.wait(timeout=30) != 0:
            raise RuntimeError("the testbed's teardown failed")


def one_run(a, wd, tb):
    hosts = (None, None) if tb is None else (tb.src, tb.dst)
    addr = "127.0.0.1" if tb is None else tb.dst_addr
    extra = a.qemu_arg or []
    procs = [start_qemu(a.qemu, wd, "src", a.guest_elf, a.guest, a.memory, a.accel, extra, a.machine, hosts[0]),
             start_qemu(a.dst_qemu or a.qemu, wd, "dst", a.guest_elf, a.guest, a.memory, a.accel, extra, a.machine, hosts[1])]
    try:
        src, dst = Qmp(f"{wd}/src.qmp", 10), Qmp(f"{wd}/dst.qmp", 10)
        end = time.time() + a.ready_timeout
        while "READY" not in open(f"{wd}/src.serial", errors="replace").read():
            if time.time() > end:
                return "error", "the source guest did not print READY"
            time.sleep(0.1)
        caps = ["postcopy-ram", "return-path"] + ([] if a.no_preempt else ["postcopy-preempt"])
        for q, extra in ((src, ["pause-before-switchover"]), (dst, ["late-block-activate"])):
            on = caps + (extra + ["switchover-ack"] if a.libvirt_caps else [])
            q.cmd("migrate-set-capabilities",
                  capabilities=[{"capability": c, "state": True} for c in ["events"] + on])
        port = free_port()
        dst.cmd("migrate-incoming", uri=f"tcp:{addr}:{port}")
        params = {"max-bandwidth": a.bandwidth << 20}
        if a.postcopy_bandwidth:
            params["max-postcopy-bandwidth"] = a.postcopy_bandwidth << 20
        src.cmd("migrate-set-parameters", **params)
        t0 = time.time()
        src.cmd("migrate", uri=f"tcp:{addr}:{port}")
        switched = continued = False
        while True:
            st = src.cmd("query-migrate").get("status")
            if not switched and time.time() - t0 >= a.switch_after:
                src.cmd("migrate-start-postcopy")
                switched = True
            if st == "pre-switchover" and not continued:
                src.cmd("migrate-continue", state="pre-switchover")
                continued = True
            if st in ("completed", "failed", "cancelled"):
                break
            if time.time() - t0 > a.timeout:
                return "error", f"the migration hung (source status {st})"
            time.sleep(0.05)
        if st != "completed":
            return "error", f"the migration ended {st}"
        end = time.time() + a.timeout
        while dst.cmd("query-migrate").get("status") != "completed":
            if time.time() > end:
                return "error", "the destination never reported completed"
            time.sleep(0.05)
        dst.cmd("query-status")  # reads the events sent so far
        time.sleep(max(a.verify - 1, 0))
        hb_before = sum(1 for l in open(f"{wd}/dst.serial", errors="replace") if l.startswith("HB "))
        time.sleep(1)
        dst.cmd("query-status")
        out = open(f"{wd}/dst.serial", errors="replace").read().splitlines()
        ok = sum(1 for l in out if l.startswith("CHECK OK"))
        fails = [l for l in out if l.startswith("CHECK FAIL") or l.startswith("FAIL ")]
        boots = sum(1 for l in out if l.startswith("BOOT "))
        hbs = sum(1 for l in out if l.startswith("HB "))
        resets = sum(1 for e in dst.events if e["event"] == "RESET")
        what = f"{ok} CHECK OK, {len(fails)} FAIL, {boots} BOOT, {hbs} HB, {resets} RESET events"
        if fails:
            what += f"; first: {fails[0]}"
        alive = hbs > hb_before
        if not alive:
            what += "; no heartbeat in the last second (stuck)"
        verdict = "verified" if ok >= 1 and alive and not fails and boots == 0 and resets == 0 else "lost"
        if verdict == "lost" and a.diagnose:
            try:
                what += "\n" + diagnose(src, dst, procs[1].pid, a.dump or [])
            except (RuntimeError, OSError) as e:  # the verdict stands; say why there is no more
                what += f"\n  (diagnosis failed: {e})"
        return verdict, what
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main():
    # `timeout` ends the script with SIGTERM: unwind, so that every QEMU is killed (finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--qemu", required=True)
    p.add_argument("--dst-qemu", help="the destination's QEMU, when not --qemu (a cross-version pair: give both a --machine they share)")
    p.add_argument("--machine", default="pc", help="QEMU's -M value for both QEMUs (default pc)")
    p.add_argument("--guest-elf", required=True)
    p.add_argument("--guest", default="ro=64 hot=16 cold=32 rate=40 beat=20",
                   help="the guest's command line (default: ci/e2e's FAST_GUEST)")
    p.add_argument("--memory", type=int, default=256)
    p.add_argument("--accel", default="tcg",
                   help="QEMU's -accel value for both QEMUs (default tcg; e.g. kvm, tcg,thread=single)")
    p.add_argument("--qemu-arg", action="append", metavar="ARG",
                   help="one more argument for both QEMUs' command lines (repeatable, e.g. --qemu-arg=-cpu --qemu-arg=qemu64)")
    p.add_argument("--ready-timeout", type=float, default=20.0,
                   help="seconds the source guest has to print READY (default 20)")
    p.add_argument("--bandwidth", type=int, default=20, help="pre-copy cap, MiB/s (ci/e2e's --bandwidth 20)")
    p.add_argument("--postcopy-bandwidth", type=int, default=0,
                   help="post-copy cap, MiB/s (default: none, as ci/e2e's scenarios without --postcopy-bandwidth)")
    p.add_argument("--switch-after", type=float, default=1.5)
    p.add_argument("--verify", type=float, default=8.0)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--runs", type=int, default=6)
    p.add_argument("--keep", metavar="DIR",
                   help="copy a run's serial outputs and QEMU logs to DIR/runN when it was not verified")
    p.add_argument("--keep-all", action="store_true", help="with --keep: keep verified runs too")
    p.add_argument("--dump", action="append", metavar="ADDR",
                   help="with --diagnose: also show 8 words of guest-physical memory at ADDR on both sides (repeatable)")
    p.add_argument("--diagnose", action="store_true",
                   help="on a lost run, print both sides' query-migrate, the destination vCPU's registers and its threads' kernel waits")
    p.add_argument("--no-preempt", action="store_true")
    p.add_argument("--libvirt-caps", action="store_true")
    p.add_argument("--testbed", metavar="POSTCOPY",
                   help="run the QEMUs in the hosts of `POSTCOPY testbed` (64 MiB/s link) instead of on loopback")
    a = p.parse_args()
    for flag, qemu in (("--qemu", a.qemu), ("--dst-qemu", a.dst_qemu)):
        if qemu and not shutil.which(qemu) and not os.access(qemu, os.X_OK):
            p.error(f"{flag} {qemu}: not an executable")
    if not os.path.isfile(a.guest_elf):
        p.error(f"--guest-elf {a.guest_elf}: no such file")

    def version_of(qemu):
        return subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()[0]

    version = version_of(a.qemu)
    if a.dst_qemu:
        version = f"source {version}, destination {version_of(a.dst_qemu)}"
    print(f"{version}; -M {a.machine}; -accel {a.accel} {' '.join(a.qemu_arg or [])}; preempt {'off' if a.no_preempt else 'on'}; "
          f"post-copy cap {a.postcopy_bandwidth or 'none'} MiB/s; "
          f"{'libvirt 12.8' if a.libvirt_caps else 'minimal'} capabilities; guest '{a.guest}'; "
          f"{'testbed, 64 MiB/s link' if a.testbed else 'loopback'}")
    counts = {"verified": 0, "lost": 0, "error": 0}
    for i in range(a.runs):
        wd = tempfile.mkdtemp(prefix="bare-postcopy-")
        tb = None
        try:
            tb = Testbed(a.testbed, 64) if a.testbed else None
            verdict, what = one_run(a, wd, tb)
            if a.keep and (verdict != "verified" or a.keep_all):
                kept = os.path.join(a.keep, f"run{i + 1}")
                shutil.copytree(wd, kept, ignore=shutil.ignore_patterns("*.qmp"))
                what += f" (kept in {kept})"
        except (RuntimeError, OSError) as e:
            verdict, what = "error", str(e)
        finally:
            try:
                if tb is not None:
                    tb.close()
            finally:
                shutil.rmtree(wd, ignore_errors=True)
        counts[verdict] += 1
        print(f"run {i + 1}: {verdict}: {what}", flush=True)
    print(f"{counts['lost']} of {a.runs} lost guest memory, {counts['verified']} verified, "
          f"{counts['error']} did not migrate")
    sys.exit(1 if counts["error"] else 0)


if __name__ == "__main__":
    main()
