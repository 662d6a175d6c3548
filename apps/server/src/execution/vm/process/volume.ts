/**
 * The sandbox's disk: an ext4 filesystem in a sparse image file of
 * SANDBOX_DISK_MB, loop-mounted at `<sandbox>/volume` and holding the
 * workspace and the sandbox's /tmp. A full volume fails writes with ENOSPC
 * inside that sandbox only; the host's disk and other sandboxes are not
 * touched. The image grows only as data is written, and `discard` gives
 * deleted blocks back to the host.
 *
 * Without loop devices (not root, no /dev/loop-control, no mkfs.ext4) the
 * volume is a plain directory and the disk limit is not enforced; the
 * provider says so loudly at start-up.
 *
 * Invariants:
 * - The filesystem is created empty and owned by the sandbox's host uid; it
 *   is mounted nosuid,nodev, so nothing on it gains privileges.
 * - unmountVolume() is idempotent and runs before the sandbox's directory is
 *   removed (removing through a mount would fail on the mount point).
 */
import { existsSync, readFileSync } from "node:fs";
import { chown, mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { runProgram } from "@repo/workspace";
import { findOnPath } from "./bubblewrap";

export interface VolumeSupport {
  enforced: boolean;
  /** Why the disk limit cannot be enforced. */
  reason?: string;
}

export function detectVolumeSupport(): VolumeSupport {
  if (process.getuid?.() !== 0) return { enforced: false, reason: "loop mounts need root" };
  if (!existsSync("/dev/loop-control")) return { enforced: false, reason: "no /dev/loop-control (loop devices)" };
  for (const tool of ["mkfs.ext4", "mount", "umount"]) {
    if (!findOnPath(tool, `${process.env.PATH ?? ""}:/usr/sbin:/sbin`)) {
      return { enforced: false, reason: `${tool} is not installed` };
    }
  }
  return { enforced: true };
}

function tool(name: string): string {
  return findOnPath(name, `${process.env.PATH ?? ""}:/usr/sbin:/sbin`) ?? name;
}

export interface Volume {
  /** Where the volume is (mounted); holds `workspace/` and `tmp/`. */
  mountPoint: string;
  /** The image file, when the volume is a loop-mounted filesystem. */
  image?: string;
}

/** Creates the sandbox's volume in `dir` and its `workspace` and `tmp` directories, owned by `uid`. */
export async function createVolume(
  dir: string,
  sizeMb: number | null,
  owner: { uid: number; gid: number },
): Promise<Volume> {
  const mountPoint = join(dir, "volume");
  await mkdir(mountPoint, { recursive: true, mode: 0o700 });
  let image: string | undefined;
  if (sizeMb !== null) {
    image = join(dir, "volume.img");
    const file = await open(image, "wx", 0o600);
    try {
      await file.truncate(sizeMb * 1024 * 1024);
    } finally {
      await file.close();
    }
    // -m 0: no blocks reserved for root (nothing runs as root inside); the lazy options skip
    // zeroing metadata an empty sparse file already holds as zeros.
    await runProgram(tool("mkfs.ext4"), [
      "-q",
      "-F",
      "-m",
      "0",
      "-E",
      `lazy_itable_init=1,lazy_journal_init=1,root_owner=${owner.uid}:${owner.gid}`,
      image,
    ]);
    await runProgram(tool("mount"), ["-o", "loop,nosuid,nodev,noatime,discard,noinit_itable", image, mountPoint]);
  }
  await chown(mountPoint, owner.uid, owner.gid);
  for (const name of ["workspace", "tmp"]) {
    const path = join(mountPoint, name);
    await mkdir(path, { recursive: true, mode: 0o700 });
    await chown(path, owner.uid, owner.gid);
  }
  await rm(join(mountPoint, "lost+found"), { recursive: true, force: true });
  return { mountPoint, image };
}

/** True while something is mounted at `path` (in this process's mount namespace). */
export function isMounted(path: string): boolean {
  try {
    return readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .some((line) => line.split(" ")[4]?.replace(/\\040/g, " ") === path);
  } catch {
    return false;
  }
}

/** Unmounts the volume if it is mounted and removes its image. Idempotent. */
export async function unmountVolume(dir: string): Promise<void> {
  const mountPoint = join(dir, "volume");
  if (isMounted(mountPoint)) {
    try {
      await runProgram(tool("umount"), [mountPoint]);
    } catch {
      // Busy (a process that is still exiting): detach now, the kernel frees it when unused.
      await runProgram(tool("umount"), ["-l", mountPoint]);
    }
  }
  await rm(join(dir, "volume.img"), { force: true });
}
