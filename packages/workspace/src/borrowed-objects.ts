/**
 * A borrowed-objects directory's `tips` file, read the same way by the server
 * that writes it (apps/server/src/repository/borrowed-objects.ts) and by the
 * sidecar of a sandbox that borrows the directory: the commits whose whole
 * history its packs hold, one per line.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";

const SHA_LINE = /^[0-9a-f]{40,64}$/;

/** The commits a borrowed-objects directory names as held whole; none when it has no `tips` file. */
export async function readBorrowedTips(dir: string): Promise<string[]> {
  const text = await readFile(join(dir, "tips"), "utf8").catch(() => "");
  return text.split("\n").filter((line) => SHA_LINE.test(line));
}
