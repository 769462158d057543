/**
 * A small description language for C structures with natural x86-64
 * alignment, and the encoder/decoder that follows it. The uapi structures in
 * `uapi.ts` are written with it; `tests/unit/uapi_layout_test.ts` compiles
 * the C header and checks every offset and size against these descriptions.
 *
 * @module
 */

/** A scalar field type. */
export type Scalar = "u8" | "u16" | "u32" | "u64" | "i32" | "i64";

/** A field: a scalar, or a fixed array of bytes (`char[N]`, `__u8[N]`). */
export type FieldType = Scalar | { bytes: number } | { cstring: number };

const SCALAR_SIZE: Record<Scalar, number> = { u8: 1, u16: 2, u32: 4, u64: 8, i32: 4, i64: 8 };

/** One field with its computed offset. */
export interface FieldLayout {
  /** Field name, as in the C header. */
  name: string;
  /** Its type. */
  type: FieldType;
  /** Byte offset in the structure. */
  offset: number;
  /** Size in bytes. */
  size: number;
}

/** A structure layout: C name, fields with offsets, total size. */
export interface StructLayout<F extends string> {
  /** The C structure name without `struct`. */
  cname: string;
  /** Fields in declaration order. */
  fields: readonly FieldLayout[];
  /** sizeof the structure. */
  size: number;
  /** Field lookup by name. */
  byName: Record<F, FieldLayout>;
}

function sizeAlign(t: FieldType): [number, number] {
  if (typeof t === "string") return [SCALAR_SIZE[t], SCALAR_SIZE[t]];
  if ("bytes" in t) return [t.bytes, 1];
  return [t.cstring, 1];
}

/** Computes a layout with natural alignment, as gcc does on x86-64. */
export function defineStruct<F extends string>(
  cname: string,
  fields: readonly (readonly [F, FieldType])[],
): StructLayout<F> {
  let offset = 0;
  let maxAlign = 1;
  const out: FieldLayout[] = [];
  for (const [name, type] of fields) {
    const [size, align] = sizeAlign(type);
    offset = Math.ceil(offset / align) * align;
    out.push({ name, type, offset, size });
    offset += size;
    maxAlign = Math.max(maxAlign, align);
  }
  const size = Math.ceil(offset / maxAlign) * maxAlign;
  const byName = Object.fromEntries(out.map((f) => [f.name, f])) as Record<F, FieldLayout>;
  return { cname, fields: out, size, byName };
}

/** A decoded structure value: numbers, bigints for 64-bit, strings, bytes. */
export type StructValue<F extends string> = Record<F, number | bigint | string | Uint8Array>;

/** Allocates a zeroed buffer of the structure's size. */
export function alloc(layout: StructLayout<string>): Uint8Array<ArrayBuffer> {
  return new Uint8Array(layout.size);
}

/** Decodes `buf` according to `layout`. */
export function decode<F extends string>(layout: StructLayout<F>, buf: Uint8Array): StructValue<F> {
  if (buf.byteLength < layout.size) {
    throw new RangeError(`${layout.cname}: need ${layout.size} bytes, got ${buf.byteLength}`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Record<string, number | bigint | string | Uint8Array> = {};
  for (const f of layout.fields) {
    const t = f.type;
    if (typeof t === "string") {
      out[f.name] = readScalar(dv, f.offset, t);
    } else if ("bytes" in t) {
      out[f.name] = buf.slice(f.offset, f.offset + f.size);
    } else {
      const raw = buf.subarray(f.offset, f.offset + f.size);
      const nul = raw.indexOf(0);
      out[f.name] = new TextDecoder().decode(nul < 0 ? raw : raw.subarray(0, nul));
    }
  }
  return out as StructValue<F>;
}

/** Encodes `value` into a new buffer; missing fields are zero. */
export function encode<F extends string>(
  layout: StructLayout<F>,
  value: Partial<StructValue<F>>,
): Uint8Array<ArrayBuffer> {
  const buf = alloc(layout);
  const dv = new DataView(buf.buffer);
  for (const f of layout.fields) {
    const v = value[f.name as F];
    if (v === undefined) continue;
    const t = f.type;
    if (typeof t === "string") {
      writeScalar(dv, f.offset, t, v as number | bigint);
    } else {
      const bytes = typeof v === "string" ? new TextEncoder().encode(v) : v as Uint8Array;
      const limit = "cstring" in t ? f.size - 1 : f.size;
      if (bytes.byteLength > limit) {
        throw new RangeError(`${layout.cname}.${f.name}: ${bytes.byteLength} bytes, max ${limit}`);
      }
      buf.set(bytes, f.offset);
    }
  }
  return buf;
}

function readScalar(dv: DataView, off: number, t: Scalar): number | bigint {
  switch (t) {
    case "u8":
      return dv.getUint8(off);
    case "u16":
      return dv.getUint16(off, true);
    case "u32":
      return dv.getUint32(off, true);
    case "i32":
      return dv.getInt32(off, true);
    case "u64":
      return dv.getBigUint64(off, true);
    case "i64":
      return dv.getBigInt64(off, true);
  }
}

function writeScalar(dv: DataView, off: number, t: Scalar, v: number | bigint): void {
  switch (t) {
    case "u8":
      return dv.setUint8(off, Number(v));
    case "u16":
      return dv.setUint16(off, Number(v), true);
    case "u32":
      return dv.setUint32(off, Number(v), true);
    case "i32":
      return dv.setInt32(off, Number(v), true);
    case "u64":
      return dv.setBigUint64(off, BigInt(v), true);
    case "i64":
      return dv.setBigInt64(off, BigInt(v), true);
  }
}
