"""The sandbox's syscall filter: a classic-BPF seccomp program for ``bwrap --seccomp``.

Without it, code in the sandbox (uid 65534, no capabilities, no-new-privs) could still
reach kernel interfaces that are a large attack surface and that no data-science code
needs: measured inside the sandbox before this filter, a forked child created a new user
namespace (in which it holds every capability), ``ptrace`` succeeded, and ``io_uring``,
``perf_event_open``, ``bpf`` and ``keyctl`` were all reachable. The filter denies them
with EPERM, denies ``clone`` with namespace flags, and answers ``clone3`` with ENOSYS so
that glibc falls back to ``clone``, whose flags a classic filter can read (Docker's
default profile does the same). Sockets are left alone: ipykernel binds 127.0.0.1 in the
empty network namespace, which is what isolates the network.

Built here, with no libseccomp, for x86_64, the machine kind this project runs on; other
architectures run without this layer, and the sandbox's isolation list says so.
"""

from __future__ import annotations

import errno
import platform
import struct

# Linux <linux/audit.h> and <linux/seccomp.h>.
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
# <linux/filter.h> opcodes.
LD_ABS_W = 0x20
JEQ = 0x15
JGE = 0x35
JSET = 0x45
RET = 0x06
# Offsets in struct seccomp_data: nr, arch, instruction pointer, then args[6].
NR, ARCH, ARG0_LOW = 0, 4, 16

CLONE = 56
CLONE3 = 435
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (and NEWTIME, 0x80).
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000 | 0x00000080

# x86_64 numbers, from <asm/unistd_64.h>.
DENIED_X86_64: dict[str, int] = {
    "ptrace": 101, "syslog": 103, "uselib": 134, "vhangup": 153,
    "pivot_root": 155, "_sysctl": 156, "acct": 163, "chroot": 161, "mount": 165,
    "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170,
    "setdomainname": 171, "iopl": 172, "ioperm": 173, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
    "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
}  # fmt: skip


def supported() -> bool:
    """Whether this machine's architecture has a filter here."""
    return platform.machine() == "x86_64"


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program() -> bytes:
    """The filter, as the array of ``struct sock_filter`` that bwrap reads from a fd."""
    checks = [(JGE, X32_SYSCALL_BIT, "deny"), (JEQ, CLONE3, "nosys"), (JEQ, CLONE, "clone")]
    checks += [(JEQ, nr, "deny") for nr in sorted(DENIED_X86_64.values())]
    first = 4  # the checks follow: load arch, compare arch, foreign-ABI exit, load nr
    exits = first + len(checks)
    # The exits below, in order: allow; clone's flag check (3 insns); deny; nosys.
    label = {"allow": exits, "clone": exits + 1, "deny": exits + 4, "nosys": exits + 5}
    insns = [
        _insn(LD_ABS_W, ARCH),
        _insn(JEQ, AUDIT_ARCH_X86_64, jt=1),
        _insn(RET, RET_ERRNO | errno.EPERM),  # i386 (int 0x80) or another foreign ABI
        _insn(LD_ABS_W, NR),
    ]
    for pc, (op, nr, target) in enumerate(checks, start=first):
        insns.append(_insn(op, nr, jt=label[target] - pc - 1))  # jumps are relative
    insns += [
        _insn(RET, RET_ALLOW),
        _insn(LD_ABS_W, ARG0_LOW),  # clone's flags: its first argument on x86_64
        _insn(JSET, CLONE_NAMESPACE_FLAGS, jt=1),
        _insn(RET, RET_ALLOW),
        _insn(RET, RET_ERRNO | errno.EPERM),
        _insn(RET, RET_ERRNO | errno.ENOSYS),
    ]
    return b"".join(insns)
