/**
 * Measuring a git pack as it streams past: how many bytes moved and how many
 * objects the pack declares in its header (`PACK`, version, object count), so
 * every transfer can say what it cost without holding the pack in memory.
 *
 * The meter passes every chunk on unchanged; it never buffers more than the
 * 12-byte header.
 */
import { Transform, type TransformCallback } from "node:stream";

const HEADER_BYTES = 12;

export interface PackStats {
  /** Objects the pack holds (from its header), or null when fewer than 12 bytes went through. */
  objects: number | null;
  bytes: number;
}

/** A pack's object count from its first 12 bytes (`PACK`, version, count), or null when they are not a pack header. */
export function packObjectCount(head: Buffer): number | null {
  if (head.length < HEADER_BYTES || head.toString("latin1", 0, 4) !== "PACK") return null;
  return head.readUInt32BE(8);
}

export class PackMeter extends Transform {
  private moved = 0;
  private header = Buffer.alloc(0);
  private count: number | null = null;

  /** @param onChunk called for every chunk that passes (e.g. to reset an idle timer). */
  constructor(private readonly onChunk?: () => void) {
    super();
  }

  get stats(): PackStats {
    return { objects: this.count, bytes: this.moved };
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.moved += chunk.length;
    if (this.count === null && this.header.length < HEADER_BYTES) {
      this.header = Buffer.concat([this.header, chunk.subarray(0, HEADER_BYTES - this.header.length)]);
      if (this.header.length === HEADER_BYTES) this.count = packObjectCount(this.header);
    }
    this.onChunk?.();
    callback(null, chunk);
  }
}
