// Signalling messages on /api/ws: the console's mirror of hub/messages.py
// (schemas per direction, strict validation). What the hub sends is checked
// before the console acts on it, and what the console sends is checked
// before it goes out, so neither side's bug becomes the other's problem.

import { JsonError, isIntegerIn, parseStrictJson, plain } from "./json.js";
import { codePoints, utf8 } from "./util.js";

export const VERSION = 1;
export const MAX_MESSAGE_BYTES = 64 * 1024;
const ID = /^[0-9a-f]{32}$/;
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]/u;
const CONTROL_OR_NEWLINE = /[\x00-\x1f\x7f\ud800-\udfff]/u;

export class MessageError extends Error {
  constructor(reason, message) {
    super(message);
    this.name = "MessageError";
    this.reason = reason;
  }
}

// -- field specifications ----------------------------------------------------------------
const text = (max, multiline = false) => ({ kind: "text", max, multiline });
const integer = (low, high) => ({ kind: "integer", low, high });
const id = { kind: "id" };
const boolean = { kind: "boolean" };
const nullable = (inner) => ({ kind: "nullable", inner });
const table = (fields) => ({ kind: "table", fields });
const listOf = (item, max) => ({ kind: "list", item, max });
const tagged = (kinds) => ({ kind: "tagged", kinds });

const PEM = text(8192, true);
const PAYLOAD = tagged({
  offer: { sdp: text(32768, true) },
  answer: { sdp: text(32768, true) },
  ice: { candidate: text(1024), sdpMid: nullable(text(64)), sdpMLineIndex: nullable(integer(0, 64)) },
  identity: { fingerprint: text(200), signature: text(1024), certificate: PEM },
  bye: {},
});
const SIGNAL = { session: id, payload: PAYLOAD };
const QUEUE_ENTRY = table({
  entry: id,
  first_name: text(64),
  age: integer(0, 130),
  reason: text(120),
  waiting_seconds: integer(0, 7 * 24 * 3600),
  booth: text(64),
});

export const SCHEMAS = {
  "doctor-to-hub": {
    accept: { entry: id },
    signal: SIGNAL,
    end: { session: id },
  },
  "hub-to-doctor": {
    queue: { entries: listOf(QUEUE_ENTRY, 500) },
    taken: { entry: id, by_me: boolean },
    session: { session: id, entry: id, booth: text(64), booth_certificate: PEM },
    signal: SIGNAL,
    ended: { session: id, reason: text(80) },
    error: { code: text(40), message: text(200) },
  },
};

function fail(where, what) {
  throw new MessageError("field", `${where} ${what}`);
}

function checkTable(value, fields, where) {
  if (!(value instanceof Map)) fail(where, "must be an object");
  const unknown = [...value.keys()].filter((key) => !Object.hasOwn(fields, key));
  if (unknown.length) fail(where, `has unknown field(s) ${unknown.sort().join(", ").slice(0, 80)}`);
  for (const [name, spec] of Object.entries(fields)) {
    if (!value.has(name)) fail(where, `lacks '${name}'`);
    check(value.get(name), spec, `${where}.${name}`);
  }
}

function check(value, spec, where) {
  switch (spec.kind) {
    case "nullable":
      if (value !== null) check(value, spec.inner, where);
      return;
    case "text":
      if (typeof value !== "string" || codePoints(value) > spec.max) fail(where, `must be text of at most ${spec.max} characters`);
      if ((spec.multiline ? CONTROL : CONTROL_OR_NEWLINE).test(value)) fail(where, "holds control characters or lone surrogates");
      return;
    case "integer":
      if (!isIntegerIn(value, spec.low, spec.high)) fail(where, `must be an integer in ${spec.low}..${spec.high}`);
      return;
    case "id":
      if (typeof value !== "string" || !ID.test(value)) fail(where, "must be a 32-hex-digit identifier");
      return;
    case "boolean":
      if (typeof value !== "boolean") fail(where, "must be true or false");
      return;
    case "table":
      checkTable(value, spec.fields, where);
      return;
    case "list":
      if (!Array.isArray(value) || value.length > spec.max) fail(where, `must be a list of at most ${spec.max} items`);
      value.forEach((item, index) => check(item, spec.item, `${where}[${index}]`));
      return;
    case "tagged": {
      const kind = value instanceof Map ? value.get("kind") : undefined;
      if (typeof kind !== "string" || !Object.hasOwn(spec.kinds, kind)) {
        fail(`${where}.kind`, `must be one of ${Object.keys(spec.kinds).join(", ")}`);
      }
      const rest = new Map([...value].filter(([key]) => key !== "kind"));
      checkTable(rest, spec.kinds[kind], `${where}(${kind})`);
      return;
    }
    default:
      throw new Error(`unknown spec ${spec.kind}`);
  }
}

/** Decode and validate one message travelling in `direction`; a plain object {type, ...fields}. */
export function parse(raw, direction) {
  const size = utf8(raw).length;
  if (size > MAX_MESSAGE_BYTES) throw new MessageError("too_large", `message of ${size} bytes`);
  let document;
  try {
    document = parseStrictJson(raw);
  } catch (error) {
    if (error instanceof JsonError) throw new MessageError("not_json", "message is not JSON");
    throw error;
  }
  if (!(document instanceof Map)) throw new MessageError("not_object", "message is not a JSON object");
  if (document.get("v") !== VERSION) throw new MessageError("version", "unsupported version");
  const type = document.get("type");
  const schema = typeof type === "string" && Object.hasOwn(SCHEMAS[direction], type) ? SCHEMAS[direction][type] : null;
  if (schema === null) throw new MessageError("unknown_type", `no message type ${String(type).slice(0, 40)}`);
  const body = new Map([...document].filter(([key]) => key !== "v" && key !== "type"));
  checkTable(body, schema, type);
  return { type, ...plain(body) };
}

/** The wire form of a message the console sends, checked against the hub's schema first. */
export function encode(type, body, direction = "doctor-to-hub") {
  const textual = JSON.stringify({ v: VERSION, type, ...body });
  parse(textual, direction);
  return textual;
}
