/*
 * Length-prefixed frames of V8-serialized values: the child-process transport. Node's own IPC
 * channel ('ipc' stdio with `serialization: 'advanced'`) deserializes in the parent where a
 * malformed message throws out of reach, so a payload writing garbage to its fd crashed the
 * host. Here the host owns the parsing: a bad or oversized frame is an error it catches, and
 * the child that sent it is ended. v8.serialize keeps Buffers as Buffers (the worker's
 * postMessage turns them into Uint8Arrays).
 */
import { deserialize, serialize } from 'node:v8';

/** Largest frame accepted (bytes): a child claiming more is ended rather than buffered. */
export const MAX_FRAME_BYTES = 256 * 1024 * 1024;
const HEADER = 4;

/** One value as a frame: its length (u32, big-endian), then its V8 serialization. Throws DataCloneError for what cannot be cloned. */
export function encodeFrame(value: unknown): Buffer {
  const body = serialize(value);
  if (body.length > MAX_FRAME_BYTES) throw new RangeError(`a message of ${body.length} bytes is over the ${MAX_FRAME_BYTES}-byte frame limit`);
  const frame = Buffer.allocUnsafe(HEADER + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, HEADER);
  return frame;
}

/** Reassembles frames from a byte stream; `push` throws on a frame it cannot accept or decode. */
export class FrameReader {
  #buffer: Buffer = Buffer.alloc(0);

  /** The values completed by `chunk` (in order). */
  push(chunk: Buffer): unknown[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const values: unknown[] = [];
    let at = 0;
    while (this.#buffer.length - at >= HEADER) {
      const length = this.#buffer.readUInt32BE(at);
      if (length > MAX_FRAME_BYTES) throw new RangeError(`a frame of ${length} bytes is over the ${MAX_FRAME_BYTES}-byte limit`);
      if (this.#buffer.length - at - HEADER < length) break;
      values.push(deserialize(this.#buffer.subarray(at + HEADER, at + HEADER + length)));
      at += HEADER + length;
    }
    this.#buffer = at === this.#buffer.length ? Buffer.alloc(0) : this.#buffer.subarray(at);
    return values;
  }
}
