/**
 * The seccomp filters of a sandbox, compiled to classic BPF for bubblewrap's
 * `--seccomp <fd>` (it loads exactly these bytes, with no_new_privs set).
 *
 * Two profiles, stacked (the kernel applies every filter a process carries):
 * - `sidecar`, on the whole sandbox: the kernel's riskiest interfaces and
 *   those no build or test needs — ptrace and cross-process memory access,
 *   kernel modules, kexec, keyrings, bpf, perf_event_open, userfaultfd,
 *   io_uring, handle-based opens, the new mount API, raw and packet sockets,
 *   TIOCSTI. The sidecar itself must still create the agent's sandbox, so
 *   namespaces and mount(2) stay open here.
 * - `agent`, added on every command of the agent: also no namespaces
 *   (unshare, setns, clone with CLONE_NEW*; clone3 answers ENOSYS so libc
 *   falls back to clone, whose flags a filter can see), no mount, umount,
 *   pivot_root or chroot.
 * Refused calls fail with EPERM (ENOSYS for clone3), never kill the process:
 * a build that probes for a feature gets an answer it can handle.
 *
 * Invariants: a call from another ABI than the one the filter was built for
 * (x32, i386 on x86_64) is refused; the program is built for this process's
 * architecture, and an architecture without a table refuses to build.
 */

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const AND_K = 0x54;
const RET_K = 0x06;

const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;

// struct seccomp_data offsets: nr, arch, instruction_pointer, args[6] (low word first on little-endian).
const OFFSET_NR = 0;
const OFFSET_ARCH = 4;
const argLow = (index: number) => 16 + 8 * index;

const AF_INET = 2;
const AF_INET6 = 10;
const AF_PACKET = 17;
const SOCK_TYPE_MASK = 0xf;
const SOCK_RAW = 3;
const SOCK_PACKET = 10;
const TIOCSTI = 0x5412;
/** CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME. */
const CLONE_NAMESPACES =
  0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80;
const X32_SYSCALL_BIT = 0x40000000;

type SyscallName =
  | "ptrace"
  | "process_vm_readv"
  | "process_vm_writev"
  | "pidfd_getfd"
  | "kcmp"
  | "init_module"
  | "finit_module"
  | "delete_module"
  | "kexec_load"
  | "kexec_file_load"
  | "reboot"
  | "swapon"
  | "swapoff"
  | "acct"
  | "add_key"
  | "request_key"
  | "keyctl"
  | "bpf"
  | "perf_event_open"
  | "userfaultfd"
  | "io_uring_setup"
  | "io_uring_enter"
  | "io_uring_register"
  | "open_by_handle_at"
  | "name_to_handle_at"
  | "lookup_dcookie"
  | "quotactl"
  | "syslog"
  | "open_tree"
  | "move_mount"
  | "fsopen"
  | "fsconfig"
  | "fsmount"
  | "fspick"
  | "mount_setattr"
  | "settimeofday"
  | "clock_settime"
  | "clock_adjtime"
  | "adjtimex"
  | "sethostname"
  | "setdomainname"
  | "vhangup"
  | "mount"
  | "umount2"
  | "pivot_root"
  | "chroot"
  | "unshare"
  | "setns"
  | "clone"
  | "clone3"
  | "socket"
  | "ioctl";

interface Architecture {
  /** AUDIT_ARCH_* of seccomp_data.arch. */
  audit: number;
  /** Syscall numbers above this bit are another ABI (x32) sharing the architecture. */
  foreignAbiBit?: number;
  numbers: Record<SyscallName, number>;
}

const ARCHITECTURES: Record<string, Architecture> = {
  x64: {
    audit: 0xc000003e,
    foreignAbiBit: X32_SYSCALL_BIT,
    numbers: {
      ptrace: 101,
      process_vm_readv: 310,
      process_vm_writev: 311,
      pidfd_getfd: 438,
      kcmp: 312,
      init_module: 175,
      finit_module: 313,
      delete_module: 176,
      kexec_load: 246,
      kexec_file_load: 320,
      reboot: 169,
      swapon: 167,
      swapoff: 168,
      acct: 163,
      add_key: 248,
      request_key: 249,
      keyctl: 250,
      bpf: 321,
      perf_event_open: 298,
      userfaultfd: 323,
      io_uring_setup: 425,
      io_uring_enter: 426,
      io_uring_register: 427,
      open_by_handle_at: 304,
      name_to_handle_at: 303,
      lookup_dcookie: 212,
      quotactl: 179,
      syslog: 103,
      open_tree: 428,
      move_mount: 429,
      fsopen: 430,
      fsconfig: 431,
      fsmount: 432,
      fspick: 433,
      mount_setattr: 442,
      settimeofday: 164,
      clock_settime: 227,
      clock_adjtime: 305,
      adjtimex: 159,
      sethostname: 170,
      setdomainname: 171,
      vhangup: 153,
      mount: 165,
      umount2: 166,
      pivot_root: 155,
      chroot: 161,
      unshare: 272,
      setns: 308,
      clone: 56,
      clone3: 435,
      socket: 41,
      ioctl: 16,
    },
  },
  arm64: {
    audit: 0xc00000b7,
    numbers: {
      ptrace: 117,
      process_vm_readv: 270,
      process_vm_writev: 271,
      pidfd_getfd: 438,
      kcmp: 272,
      init_module: 105,
      finit_module: 273,
      delete_module: 106,
      kexec_load: 104,
      kexec_file_load: 294,
      reboot: 142,
      swapon: 224,
      swapoff: 225,
      acct: 89,
      add_key: 217,
      request_key: 218,
      keyctl: 219,
      bpf: 280,
      perf_event_open: 241,
      userfaultfd: 282,
      io_uring_setup: 425,
      io_uring_enter: 426,
      io_uring_register: 427,
      open_by_handle_at: 265,
      name_to_handle_at: 264,
      lookup_dcookie: 18,
      quotactl: 60,
      syslog: 116,
      open_tree: 428,
      move_mount: 429,
      fsopen: 430,
      fsconfig: 431,
      fsmount: 432,
      fspick: 433,
      mount_setattr: 442,
      settimeofday: 170,
      clock_settime: 112,
      clock_adjtime: 266,
      adjtimex: 171,
      sethostname: 161,
      setdomainname: 162,
      vhangup: 58,
      mount: 40,
      umount2: 39,
      pivot_root: 41,
      chroot: 51,
      unshare: 97,
      setns: 268,
      clone: 220,
      clone3: 435,
      socket: 198,
      ioctl: 29,
    },
  },
};

/** Calls refused everywhere in the sandbox. */
const SANDBOX_DENIED: readonly SyscallName[] = [
  "ptrace",
  "process_vm_readv",
  "process_vm_writev",
  "pidfd_getfd",
  "kcmp",
  "init_module",
  "finit_module",
  "delete_module",
  "kexec_load",
  "kexec_file_load",
  "reboot",
  "swapon",
  "swapoff",
  "acct",
  "add_key",
  "request_key",
  "keyctl",
  "bpf",
  "perf_event_open",
  "userfaultfd",
  "io_uring_setup",
  "io_uring_enter",
  "io_uring_register",
  "open_by_handle_at",
  "name_to_handle_at",
  "lookup_dcookie",
  "quotactl",
  "syslog",
  "open_tree",
  "move_mount",
  "fsopen",
  "fsconfig",
  "fsmount",
  "fspick",
  "mount_setattr",
  "settimeofday",
  "clock_settime",
  "clock_adjtime",
  "adjtimex",
  "sethostname",
  "setdomainname",
  "vhangup",
];

/** Calls refused to the agent on top of SANDBOX_DENIED. */
const AGENT_DENIED: readonly SyscallName[] = ["mount", "umount2", "pivot_root", "chroot", "unshare", "setns"];

export type SeccompProfile = "sidecar" | "agent";

/** One instruction; `jt`/`jf` are labels resolved when the program is assembled. */
interface Instruction {
  code: number;
  k: number;
  jt?: string;
  jf?: string;
  label?: string;
}

const NEXT = "";

function load(offset: number, label?: string): Instruction {
  return { code: LD_W_ABS, k: offset, label };
}
function jump(code: number, k: number, jt: string, jf: string, label?: string): Instruction {
  return { code, k, jt, jf, label };
}
function ret(value: number, label?: string): Instruction {
  return { code: RET_K, k: value, label };
}

/** Resolves labels to relative jumps (classic BPF jumps forward, at most 255 instructions). */
function assemble(program: Instruction[]): Buffer {
  const positions = new Map<string, number>();
  program.forEach((instruction, index) => {
    if (instruction.label) positions.set(instruction.label, index);
  });
  const offset = (from: number, label: string | undefined): number => {
    if (label === undefined || label === NEXT) return 0;
    const target = positions.get(label);
    if (target === undefined) throw new Error(`seccomp: unknown label ${label}`);
    const distance = target - from - 1;
    if (distance < 0 || distance > 255) throw new Error(`seccomp: jump to ${label} out of range`);
    return distance;
  };
  const bytes = Buffer.alloc(program.length * 8);
  program.forEach((instruction, index) => {
    bytes.writeUInt16LE(instruction.code, index * 8);
    bytes.writeUInt8(offset(index, instruction.jt), index * 8 + 2);
    bytes.writeUInt8(offset(index, instruction.jf), index * 8 + 3);
    bytes.writeUInt32LE(instruction.k >>> 0, index * 8 + 4);
  });
  return bytes;
}

function programFor(profile: SeccompProfile, arch: Architecture): Instruction[] {
  const n = arch.numbers;
  const denied = profile === "agent" ? [...SANDBOX_DENIED, ...AGENT_DENIED] : SANDBOX_DENIED;
  const program: Instruction[] = [load(OFFSET_ARCH), jump(JEQ_K, arch.audit, NEXT, "deny"), load(OFFSET_NR)];
  if (arch.foreignAbiBit) program.push(jump(JGE_K, arch.foreignAbiBit, "deny", NEXT));
  for (const name of denied) program.push(jump(JEQ_K, n[name], "deny", NEXT));
  // socket(): no raw or packet sockets (sniffing, spoofing), whatever the capabilities say.
  program.push(
    jump(JEQ_K, n.socket, NEXT, "not-socket"),
    load(argLow(0)),
    jump(JEQ_K, AF_PACKET, "deny", NEXT),
    jump(JEQ_K, AF_INET, "socket-type", NEXT),
    jump(JEQ_K, AF_INET6, "socket-type", "allow"),
    load(argLow(1), "socket-type"),
    { code: AND_K, k: SOCK_TYPE_MASK },
    jump(JEQ_K, SOCK_RAW, "deny", NEXT),
    jump(JEQ_K, SOCK_PACKET, "deny", "allow"),
  );
  // ioctl(TIOCSTI): typing into a terminal another process reads.
  program.push(
    jump(JEQ_K, n.ioctl, NEXT, "not-ioctl", "not-socket"),
    load(argLow(1)),
    jump(JEQ_K, TIOCSTI, "deny", "allow"),
  );
  if (profile === "agent") {
    program.push(
      jump(JEQ_K, n.clone3, NEXT, "not-clone3", "not-ioctl"),
      ret(RET_ERRNO | ENOSYS),
      jump(JEQ_K, n.clone, NEXT, "allow", "not-clone3"),
      load(argLow(0)),
      jump(JSET_K, CLONE_NAMESPACES, "deny", "allow"),
    );
  } else {
    program.push(ret(RET_ALLOW, "not-ioctl"));
  }
  program.push(ret(RET_ALLOW, "allow"), ret(RET_ERRNO | EPERM, "deny"));
  return program;
}

/** The compiled filter for `profile` on this machine's architecture (`process.arch`). */
export function compileSeccompFilter(profile: SeccompProfile, architecture: string = process.arch): Buffer {
  const arch = ARCHITECTURES[architecture];
  if (!arch) throw new Error(`no seccomp table for architecture ${architecture}`);
  return assemble(programFor(profile, arch));
}

/** Whether this machine's architecture has a seccomp table. */
export function seccompSupported(architecture: string = process.arch): boolean {
  return architecture in ARCHITECTURES;
}
