// The "consult" data-channel protocol v1, the console's mirror of
// kiosk/session/datachannel.py (authoritative; same rules, same reasons).
//
// One JSON object per message, UTF-8, at most 256 KiB:
// {"v": 1, "type": ..., "id": n, ...}; ids number each sender's messages
// (0 .. 2**53-1) and replies point back with "ref".
//
// * Validation is strict (unknown or missing keys, a boolean or a float where
//   an integer is expected, NaN, duplicate keys, oversized text, control
//   characters, lone surrogates...) and a refused message never changes the
//   state: the next valid one works as if it had not come.
// * Roles: only the doctor sends "command"; only the booth sends ack,
//   progress, result, status, reading and stop; chat and files go both ways.
// * Each command gets one ack; a refused command, or an accepted one without
//   a result, ends there. bp.start may report progress; commands with a
//   result end with exactly one result (readings, still or error).
// * stop (the booth's STOP button) ends every acked command still running.
// * Files: file-offer, file-chunk (indexes from 0, <= 64 KiB decoded,
//   canonical base64), file-done; the receiver checks size and SHA-256 and
//   answers file-ack. A broken transfer is discarded (bytes overwritten).
//
// receiveMessage() is async only because SHA-256 comes from
// crypto.subtle.digest; callers must feed messages one at a time, in order
// (see ConsultChannel below, which queues them).

import { JsonError, isIntegerIn, numberIn, parseStrictJson } from "./json.js";
import { codePoints, fromBase64, sha256Hex, toBase64, utf8 } from "./util.js";

export const VERSION = 1;
export const MAX_MESSAGE_BYTES = 256 * 1024;
export const MAX_ID = 2 ** 53 - 1;
export const MAX_CHAT_CHARS = 2000;
export const MAX_FILE_NAME_CHARS = 128;
export const MAX_FILE_BYTES = 20 * 1024 * 1024;
export const MAX_CHUNK_BYTES = 64 * 1024;
export const MAX_REASON_CHARS = 200;
export const MAX_INCOMING_TRANSFERS = 2;
export const MAX_PENDING_COMMANDS = 32;
export const MAX_READINGS = 16;
export const MAX_PLETH_SAMPLES = 256;
export const MAX_CUFF_PRESSURE = 400;
export const ROLES = Object.freeze(["booth", "doctor"]);
export const CAMERAS = Object.freeze(["booth", "otoscope", "dermatoscope"]);

/** command name -> what its result holds (null: the ack ends it). */
export const COMMANDS = Object.freeze({
  "oximeter.start": null,
  "oximeter.stop": null,
  "bp.start": "readings",
  "bp.abort": null,
  "thermometer.read": "readings",
  "camera.select": null,
  "camera.still": "still",
  "stethoscope.start": null,
  "stethoscope.stop": null,
});
const PROGRESS_COMMANDS = new Set(["bp.start"]);

const BOTH = ["booth", "doctor"];
/** Which role may send each message type. */
export const SENDERS = Object.freeze({
  chat: BOTH,
  "file-offer": BOTH,
  "file-chunk": BOTH,
  "file-done": BOTH,
  "file-ack": BOTH,
  command: ["doctor"],
  ack: ["booth"],
  progress: ["booth"],
  result: ["booth"],
  status: ["booth"],
  reading: ["booth"],
  stop: ["booth"],
});

const TRANSFER = /^[A-Za-z0-9-]{1,64}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const MIME = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$/;
const NAME = /^[a-z0-9][a-z0-9_.-]{0,31}$/;
// With the u flag a class range of surrogates matches lone surrogates only, as Python sees code points.
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]/u;
const CONTROL_OR_NEWLINE = /[\x00-\x1f\x7f-\x9f\ud800-\udfff]/u;
const MAX_CHUNK_BASE64 = 4 * Math.floor((MAX_CHUNK_BYTES + 2) / 3);

/** Why a message was refused (datachannel.Reason values). */
export const Reason = Object.freeze({
  TOO_LARGE: "too_large",
  NOT_JSON: "not_json",
  NOT_OBJECT: "not_object",
  VERSION: "version",
  UNKNOWN_TYPE: "unknown_type",
  FIELD: "field",
  ROLE: "role",
  REFERENCE: "reference",
  TRANSFER: "transfer",
  BUSY: "busy",
});

export class DataChannelError extends Error {
  constructor(reason, message, { messageId = null, transfer = null } = {}) {
    super(message);
    this.name = "DataChannelError";
    this.reason = reason;
    /** The offending message's id when it could be read. */
    this.messageId = messageId;
    /** The file transfer concerned, if any (answer it with file-ack ok false). */
    this.transfer = transfer;
  }
}

const fieldError = (message, extra) => new DataChannelError(Reason.FIELD, message, extra);

// -- parsing (shape only) ---------------------------------------------------------------------
class Body {
  constructor(document, where) {
    this.document = document;
    this.where = where;
    this.read = new Set(["v", "type", "id"]);
  }

  get(key, { optional = false } = {}) {
    this.read.add(key);
    if (!this.document.has(key)) {
      if (optional) return undefined;
      throw fieldError(`${this.where} lacks '${key}'`);
    }
    const value = this.document.get(key);
    // An optional field is absent, never null: one wire form per message.
    if (optional && value === null) throw fieldError(`${this.where}.${key} must be left out rather than null`);
    return value;
  }

  checkAllRead() {
    const unknown = [...this.document.keys()].filter((key) => !this.read.has(key)).sort();
    if (unknown.length) throw fieldError(`${this.where} has unknown field(s) ${unknown.join(", ").slice(0, 80)}`);
  }
}

function text(value, where, maxChars, { multiline = false, pattern = null } = {}) {
  if (typeof value !== "string" || value.length === 0 || codePoints(value) > maxChars) {
    throw fieldError(`${where} must be text of 1..${maxChars} characters`);
  }
  if ((multiline ? CONTROL : CONTROL_OR_NEWLINE).test(value)) {
    throw fieldError(`${where} holds control characters or lone surrogates`);
  }
  if (pattern !== null && !pattern.test(value)) throw fieldError(`${where} is not in the expected form`);
  return value;
}

function integer(value, where, low, high) {
  if (!isIntegerIn(value, low, high)) throw fieldError(`${where} must be an integer in ${low}..${high}`);
  return value;
}

function number(value, where, low, high) {
  const result = numberIn(value, low, high);
  if (result === null) throw fieldError(`${where} must be a number in ${low}..${high}`);
  return result;
}

function boolean(value, where) {
  if (typeof value !== "boolean") throw fieldError(`${where} must be true or false`);
  return value;
}

function object(value, where, keys) {
  if (!(value instanceof Map)) throw fieldError(`${where} must be an object`);
  if (value.size !== keys.length || !keys.every((key) => value.has(key))) {
    throw fieldError(`${where} must hold exactly ${[...keys].sort().join(", ")}`);
  }
  return value;
}

const transferOf = (body) => text(body.get("transfer"), `${body.where}.transfer`, 64, { pattern: TRANSFER });

function reasonOf(body, key = "reason") {
  const value = body.get(key, { optional: true });
  return value === undefined ? null : text(value, `${body.where}.${key}`, MAX_REASON_CHARS);
}

const PARSERS = {
  chat: (body, id) => ({ type: "chat", id, text: text(body.get("text"), "chat.text", MAX_CHAT_CHARS, { multiline: true }) }),

  "file-offer": (body, id) => {
    const transfer = transferOf(body);
    const name = text(body.get("name"), "file-offer.name", MAX_FILE_NAME_CHARS);
    // A bare name, so no receiver can be tricked into writing outside its folder.
    if (name.includes("/") || name.includes("\\") || name === "." || name === "..") {
      throw fieldError("file-offer.name must be a bare file name", { transfer });
    }
    const mime = text(body.get("mime"), "file-offer.mime", 129, { pattern: MIME });
    const size = integer(body.get("size"), "file-offer.size", 0, MAX_FILE_BYTES);
    const sha256 = text(body.get("sha256"), "file-offer.sha256", 64, { pattern: SHA256 });
    return { type: "file-offer", id, transfer, name, mime, size, sha256 };
  },

  "file-chunk": (body, id) => {
    const transfer = transferOf(body);
    const index = integer(body.get("index"), "file-chunk.index", 0, MAX_FILE_BYTES);
    const encoded = body.get("data");
    if (typeof encoded !== "string" || encoded.length < 4 || encoded.length > MAX_CHUNK_BASE64) {
      throw fieldError(`file-chunk.data must be base64 of 1..${MAX_CHUNK_BYTES} bytes`);
    }
    const data = fromBase64(encoded);
    if (data === null) throw fieldError("file-chunk.data is not base64");
    // One encoding per chunk (padding bits zero), so what is checked is what is relayed.
    if (data.length === 0 || toBase64(data) !== encoded) throw fieldError("file-chunk.data is not canonical base64");
    return { type: "file-chunk", id, transfer, index, data };
  },

  "file-done": (body, id) => ({ type: "file-done", id, transfer: transferOf(body) }),

  "file-ack": (body, id) => ({
    type: "file-ack",
    id,
    transfer: transferOf(body),
    ok: boolean(body.get("ok"), "file-ack.ok"),
    reason: reasonOf(body),
  }),

  command: (body, id) => {
    const command = body.get("command");
    if (typeof command !== "string" || !Object.hasOwn(COMMANDS, command)) {
      throw fieldError(`command.command must be one of ${Object.keys(COMMANDS).join(", ")}`);
    }
    if (command !== "camera.select") return { type: "command", id, command, camera: null };
    const camera = body.get("camera");
    if (typeof camera !== "string" || !CAMERAS.includes(camera)) {
      throw fieldError(`command.camera must be one of ${CAMERAS.join(", ")}`);
    }
    return { type: "command", id, command, camera };
  },

  ack: (body, id) => {
    const ref = integer(body.get("ref"), "ack.ref", 0, MAX_ID);
    return { type: "ack", id, ref, ok: boolean(body.get("ok"), "ack.ok"), reason: reasonOf(body) };
  },

  progress: (body, id) => {
    const ref = integer(body.get("ref"), "progress.ref", 0, MAX_ID);
    const cuffPressure = number(body.get("cuff_pressure"), "progress.cuff_pressure", 0, MAX_CUFF_PRESSURE);
    return { type: "progress", id, ref, cuffPressure };
  },

  result: (body, id) => {
    const ref = integer(body.get("ref"), "result.ref", 0, MAX_ID);
    const rawReadings = body.get("readings", { optional: true });
    const rawStill = body.get("still", { optional: true });
    const error = reasonOf(body, "error");
    if ([rawReadings, rawStill].filter((x) => x !== undefined).length + (error !== null ? 1 : 0) !== 1) {
      throw fieldError("result must hold exactly one of readings, still, error");
    }
    let readings = null;
    if (rawReadings !== undefined) {
      if (!(rawReadings instanceof Map) || rawReadings.size < 1 || rawReadings.size > MAX_READINGS) {
        throw fieldError(`result.readings must be an object of 1..${MAX_READINGS} values`);
      }
      readings = [];
      for (const [kind, raw] of rawReadings) {
        const where = "result.readings entry";
        text(kind, `${where} name`, 32, { pattern: NAME });
        const entry = object(raw, where, ["value", "unit"]);
        const value = entry.get("value") === null ? null : number(entry.get("value"), `${where} value`, -1e9, 1e9);
        readings.push({ kind, value, unit: text(entry.get("unit"), `${where} unit`, 16) });
      }
    }
    let still = null;
    if (rawStill !== undefined) {
      const entry = object(rawStill, "result.still", ["transfer", "camera"]);
      const camera = entry.get("camera");
      if (typeof camera !== "string" || !CAMERAS.includes(camera)) {
        throw fieldError(`result.still.camera must be one of ${CAMERAS.join(", ")}`);
      }
      still = { transfer: text(entry.get("transfer"), "result.still.transfer", 64, { pattern: TRANSFER }), camera };
    }
    return { type: "result", id, ref, readings, still, error };
  },

  status: (body, id) => ({
    type: "status",
    id,
    device: text(body.get("device"), "status.device", 32, { pattern: NAME }),
    state: text(body.get("state"), "status.state", 32, { pattern: NAME }),
  }),

  reading: (body, id) => {
    let spo2 = body.get("spo2");
    let pulse = body.get("pulse");
    const pleth = body.get("pleth");
    spo2 = spo2 === null ? null : integer(spo2, "reading.spo2", 0, 100);
    pulse = pulse === null ? null : integer(pulse, "reading.pulse", 0, 300);
    if (!Array.isArray(pleth) || pleth.length > MAX_PLETH_SAMPLES) {
      throw fieldError(`reading.pleth must be a list of at most ${MAX_PLETH_SAMPLES} samples`);
    }
    return { type: "reading", id, spo2, pulse, pleth: pleth.map((s) => integer(s, "reading.pleth sample", 0, 255)) };
  },

  stop: (body, id) => {
    if (body.get("by") !== "booth") throw fieldError("stop.by must be booth");
    return { type: "stop", id, by: "booth" };
  },
};

function byteLength(raw) {
  if (typeof raw !== "string") return raw.byteLength;
  // A UTF-16 unit is at least one UTF-8 byte: the cheap bound first.
  return raw.length > MAX_MESSAGE_BYTES ? raw.length : utf8(raw).length;
}

/** Decode and validate one message (shape only: no role, no state); throws DataChannelError. */
export function parseMessage(raw) {
  const size = byteLength(raw);
  if (size > MAX_MESSAGE_BYTES) {
    throw new DataChannelError(Reason.TOO_LARGE, `message of ${size} bytes, limit ${MAX_MESSAGE_BYTES}`);
  }
  let document;
  try {
    const textual = typeof raw === "string" ? raw : new TextDecoder("utf-8", { fatal: true }).decode(raw);
    document = parseStrictJson(textual);
  } catch (error) {
    if (error instanceof JsonError || error instanceof TypeError) {
      throw new DataChannelError(Reason.NOT_JSON, "message is not UTF-8 JSON");
    }
    throw error;
  }
  if (!(document instanceof Map)) throw new DataChannelError(Reason.NOT_OBJECT, "message is not a JSON object");
  const version = document.get("v");
  if (version !== VERSION) {
    throw new DataChannelError(Reason.VERSION, `unsupported version; this side speaks v${VERSION}`);
  }
  const type = document.get("type");
  if (typeof type !== "string" || !Object.hasOwn(PARSERS, type)) {
    throw new DataChannelError(Reason.UNKNOWN_TYPE, "unknown message type");
  }
  const id = integer(document.get("id"), "id", 0, MAX_ID);
  const body = new Body(document, type);
  try {
    const message = PARSERS[type](body, id);
    body.checkAllRead();
    return message;
  } catch (error) {
    if (!(error instanceof DataChannelError)) throw error;
    error.messageId = id;
    const transfer = document.get("transfer");
    if (error.transfer === null && typeof transfer === "string" && TRANSFER.test(transfer)) error.transfer = transfer;
    throw error;
  }
}

/** The wire form of a message object (as parseMessage returns them). */
export function encode(message) {
  const document = { v: VERSION, type: message.type, id: message.id };
  switch (message.type) {
    case "chat":
      document.text = message.text;
      break;
    case "file-offer":
      Object.assign(document, {
        transfer: message.transfer,
        name: message.name,
        mime: message.mime,
        size: message.size,
        sha256: message.sha256,
      });
      break;
    case "file-chunk":
      Object.assign(document, { transfer: message.transfer, index: message.index, data: toBase64(message.data) });
      break;
    case "file-done":
      document.transfer = message.transfer;
      break;
    case "file-ack":
    case "ack":
      if (message.type === "ack") document.ref = message.ref;
      else document.transfer = message.transfer;
      document.ok = message.ok;
      if (message.reason !== null && message.reason !== undefined) document.reason = message.reason;
      break;
    case "command":
      document.command = message.command;
      if (message.camera !== null && message.camera !== undefined) document.camera = message.camera;
      break;
    case "progress":
      Object.assign(document, { ref: message.ref, cuff_pressure: message.cuffPressure });
      break;
    case "result":
      document.ref = message.ref;
      if (message.readings) {
        document.readings = Object.fromEntries(message.readings.map((m) => [m.kind, { value: m.value, unit: m.unit }]));
      }
      if (message.still) document.still = { transfer: message.still.transfer, camera: message.still.camera };
      if (message.error !== null && message.error !== undefined) document.error = message.error;
      break;
    case "status":
      Object.assign(document, { device: message.device, state: message.state });
      break;
    case "reading":
      Object.assign(document, { spo2: message.spo2, pulse: message.pulse, pleth: message.pleth });
      break;
    case "stop":
      document.by = "booth";
      break;
    default:
      throw fieldError("unknown message type");
  }
  return JSON.stringify(document);
}

// -- files ---------------------------------------------------------------------------------------
/** Reassembles one incoming file; any broken rule throws TRANSFER and wipes what was received. */
export class FileReceiver {
  constructor(offer) {
    this.offer = offer;
    this.chunks = [];
    this.received = 0;
    this.nextIndex = 0;
    this.closed = false;
  }

  add(chunk) {
    if (this.closed) throw this.error("the transfer is closed");
    if (chunk.index !== this.nextIndex) {
      this.discard();
      throw this.error("a file chunk came out of order or twice");
    }
    if (chunk.data.length < 1 || chunk.data.length > MAX_CHUNK_BYTES || this.received + chunk.data.length > this.offer.size) {
      this.discard();
      throw this.error("the file is larger than announced");
    }
    this.chunks.push(chunk.data);
    this.received += chunk.data.length;
    this.nextIndex++;
    return this.received;
  }

  async finish() {
    if (this.closed) throw this.error("the transfer is closed");
    if (this.received !== this.offer.size) {
      this.discard();
      throw this.error("the file is shorter than announced");
    }
    const data = new Uint8Array(this.received);
    let offset = 0;
    for (const chunk of this.chunks) {
      data.set(chunk, offset);
      offset += chunk.length;
    }
    this.discard();
    if ((await sha256Hex(data)) !== this.offer.sha256) {
      data.fill(0);
      throw this.error("the file does not match its SHA-256; it was discarded");
    }
    return data;
  }

  /** Overwrite and drop what was received (it may be patient data). */
  discard() {
    for (const chunk of this.chunks) chunk.fill(0);
    this.chunks = [];
    this.closed = true;
  }

  error(message) {
    return new DataChannelError(Reason.TRANSFER, message, { transfer: this.offer.transfer });
  }
}

// -- the protocol ----------------------------------------------------------------------------------
/**
 * One end of the consult channel: validates what comes in, builds what goes out.
 * Events are the parsed messages, plus {type: "file-progress", transfer, received, size} and
 * {type: "file-received", transfer, name, mime, data, sha256}; a stop event also lists in `ended`
 * the commands it ended ({ref, command}).
 */
export class DataChannelProtocol {
  constructor(role = "doctor") {
    if (!ROLES.includes(role)) throw new Error(`role must be one of ${ROLES.join(", ")}`);
    this.role = role;
    this.peer = role === "booth" ? "doctor" : "booth";
    this.nextId = 0;
    /** id -> {command, acked}: commands in flight (sent by the doctor, received by the booth). */
    this.commands = new Map();
    this.incoming = new Map();
    /** Transfers we offered and the peer has not acked yet. */
    this.outgoing = new Set();
  }

  /** Commands not finished yet: id -> command name. */
  get openCommands() {
    return new Map([...this.commands].map(([ref, entry]) => [ref, entry.command]));
  }

  get incomingTransfers() {
    return [...this.incoming.keys()];
  }

  // -- receiving --------------------------------------------------------------------------------
  /** Validate one message from the peer and apply it; resolves to the events, or rejects with DataChannelError. */
  async receiveMessage(raw) {
    const message = parseMessage(raw);
    if (!SENDERS[message.type].includes(this.peer)) {
      throw new DataChannelError(Reason.ROLE, `the ${this.peer} may not send '${message.type}' messages`, {
        messageId: message.id,
      });
    }
    switch (message.type) {
      case "file-offer":
      case "file-chunk":
      case "file-done":
        return this.receiveFile(message);
      case "file-ack":
        if (!this.outgoing.has(message.transfer)) {
          throw new DataChannelError(Reason.REFERENCE, "file-ack for no file we are sending", {
            transfer: message.transfer,
          });
        }
        this.outgoing.delete(message.transfer);
        return [message];
      case "command":
        if (this.commands.has(message.id)) {
          throw new DataChannelError(Reason.REFERENCE, "a command with this id is still open", { messageId: message.id });
        }
        if (this.commands.size >= MAX_PENDING_COMMANDS) {
          throw new DataChannelError(Reason.BUSY, "too many commands open at once", { messageId: message.id });
        }
        this.commands.set(message.id, { command: message.command, acked: false });
        return [message];
      case "ack":
      case "progress":
      case "result":
        return [{ ...message, command: this.followCommand(message) }];
      case "stop":
        return [{ ...message, ended: this.stop() }];
      default:
        return [message];
    }
  }

  async receiveFile(message) {
    if (message.type === "file-offer") {
      if (this.incoming.has(message.transfer)) {
        throw new DataChannelError(Reason.REFERENCE, "a file transfer with this id is already open");
      }
      if (this.incoming.size >= MAX_INCOMING_TRANSFERS) {
        throw new DataChannelError(Reason.BUSY, "too many incoming files at once", { transfer: message.transfer });
      }
      this.incoming.set(message.transfer, new FileReceiver(message));
      return [message];
    }
    const receiver = this.incoming.get(message.transfer);
    if (receiver === undefined) {
      throw new DataChannelError(Reason.REFERENCE, "no such incoming file transfer", { transfer: message.transfer });
    }
    if (message.type === "file-chunk") {
      let received;
      try {
        received = receiver.add(message);
      } catch (error) {
        this.incoming.delete(message.transfer);
        throw error;
      }
      return [{ type: "file-progress", transfer: message.transfer, received, size: receiver.offer.size }];
    }
    // The receiver leaves the table before the digest is awaited, so nothing can reach it meanwhile.
    this.incoming.delete(message.transfer);
    const data = await receiver.finish();
    const offer = receiver.offer;
    return [{ type: "file-received", transfer: offer.transfer, name: offer.name, mime: offer.mime, data, sha256: offer.sha256 }];
  }

  /** Check that an ack/progress/result fits the command it refers to, and apply it; returns the command name. */
  followCommand(message) {
    const entry = this.commands.get(message.ref);
    if (entry === undefined) {
      throw new DataChannelError(Reason.REFERENCE, "no open command has this id", { messageId: message.id });
    }
    const resultKind = COMMANDS[entry.command];
    if (message.type === "ack") {
      if (entry.acked) {
        throw new DataChannelError(Reason.REFERENCE, "the command was already acknowledged", { messageId: message.id });
      }
      if (!message.ok || resultKind === null) this.commands.delete(message.ref);
      else entry.acked = true;
      return entry.command;
    }
    if (!entry.acked) {
      throw new DataChannelError(Reason.REFERENCE, "the command was not acknowledged yet", { messageId: message.id });
    }
    if (message.type === "progress") {
      if (!PROGRESS_COMMANDS.has(entry.command)) {
        throw new DataChannelError(Reason.REFERENCE, `${entry.command} reports no progress`, { messageId: message.id });
      }
      return entry.command;
    }
    const produced = message.readings !== null ? "readings" : message.still !== null ? "still" : null;
    if (message.error === null && produced !== resultKind) {
      throw new DataChannelError(Reason.REFERENCE, `${entry.command} does not produce this kind of result`, {
        messageId: message.id,
      });
    }
    this.commands.delete(message.ref);
    return entry.command;
  }

  /** Commands the booth already acked end now; unacked ones crossed the stop on the wire and still get their ack. */
  stop() {
    const ended = [];
    for (const [ref, entry] of [...this.commands]) {
      if (entry.acked) {
        this.commands.delete(ref);
        ended.push({ ref, command: entry.command });
      }
    }
    return ended;
  }

  // -- sending --------------------------------------------------------------------------------------
  sendChat(text) {
    return this.send({ type: "chat", id: this.nextId, text });
  }

  /** A peripheral command (doctor only): {id, text}; the id is the ref of the answers. */
  sendCommand(command, camera = null) {
    const message = { type: "command", id: this.nextId, command, camera };
    if (this.commands.size >= MAX_PENDING_COMMANDS) {
      throw new DataChannelError(Reason.BUSY, "too many commands open at once");
    }
    const text = this.send(message, { apply: false });
    this.commands.set(message.id, { command, acked: false });
    return { id: message.id, text };
  }

  sendAck(ref, ok, reason = null) {
    return this.send({ type: "ack", id: this.nextId, ref, ok, reason });
  }

  sendProgress(ref, cuffPressure) {
    return this.send({ type: "progress", id: this.nextId, ref, cuffPressure });
  }

  sendResult(ref, { readings = null, still = null, error = null } = {}) {
    return this.send({ type: "result", id: this.nextId, ref, readings, still, error });
  }

  sendStatus(device, state) {
    return this.send({ type: "status", id: this.nextId, device, state });
  }

  sendReading(spo2, pulse, pleth = []) {
    return this.send({ type: "reading", id: this.nextId, spo2, pulse, pleth: [...pleth] });
  }

  sendStop() {
    return this.send({ type: "stop", id: this.nextId, by: "booth" });
  }

  /** The file-offer text, after validating it; chunks then come from fileMessages(). */
  offerFile(sender) {
    if (this.outgoing.has(sender.transfer)) {
      throw new DataChannelError(Reason.REFERENCE, "a file transfer with this id is already open");
    }
    const text = this.send({
      type: "file-offer",
      id: this.nextId,
      transfer: sender.transfer,
      name: sender.name,
      mime: sender.mime,
      size: sender.data.length,
      sha256: sender.sha256,
    });
    this.outgoing.add(sender.transfer);
    return text;
  }

  /** The chunk and file-done texts of an offered file, one at a time; stops if the peer cancelled. */
  *fileMessages(sender) {
    let index = 0;
    for (let start = 0; start < sender.data.length; start += sender.chunkSize) {
      if (!this.outgoing.has(sender.transfer)) return;
      const data = sender.data.subarray(start, start + sender.chunkSize);
      yield this.send({ type: "file-chunk", id: this.nextId, transfer: sender.transfer, index: index++, data });
    }
    if (this.outgoing.has(sender.transfer)) {
      yield this.send({ type: "file-done", id: this.nextId, transfer: sender.transfer });
    }
  }

  /** Our verdict on an incoming transfer; ok false on an open one cancels and discards it. */
  sendFileAck(transfer, ok, reason = null) {
    const receiver = this.incoming.get(transfer);
    if (receiver !== undefined && ok) {
      throw new DataChannelError(Reason.REFERENCE, "a transfer still open cannot be acked as received");
    }
    const text = this.send({ type: "file-ack", id: this.nextId, transfer, ok, reason });
    if (receiver !== undefined) {
      receiver.discard();
      this.incoming.delete(transfer);
    }
    return text;
  }

  send(message, { apply = true } = {}) {
    if (!SENDERS[message.type].includes(this.role)) {
      throw new DataChannelError(Reason.ROLE, `the ${this.role} may not send '${message.type}' messages`);
    }
    const text = encode(message);
    parseMessage(text); // what the peer will check, checked here first
    if (apply && ["ack", "progress", "result"].includes(message.type)) this.followCommand(message);
    else if (apply && message.type === "stop") this.stop();
    this.nextId++;
    return text;
  }
}

/** A file to send, cut into chunks; transfer ids are UUIDs. */
export class FileSender {
  static async create(data, { name, mime, transfer = crypto.randomUUID(), chunkSize = MAX_CHUNK_BYTES }) {
    if (chunkSize < 1 || chunkSize > MAX_CHUNK_BYTES) throw fieldError(`chunk size must be 1..${MAX_CHUNK_BYTES}`);
    if (data.length > MAX_FILE_BYTES) throw fieldError(`files are limited to ${MAX_FILE_BYTES} bytes`, { transfer });
    const sender = new FileSender();
    Object.assign(sender, { data, name, mime, transfer, chunkSize, sha256: await sha256Hex(data) });
    return sender;
  }
}

/** A MIME type the protocol accepts for a browser File (parameters dropped; octet-stream otherwise). */
export function wireMime(type) {
  const bare = String(type || "").split(";")[0].trim().toLowerCase();
  return MIME.test(bare) ? bare : "application/octet-stream";
}

/** A file name the protocol accepts (null when it cannot be made acceptable). */
export function wireName(name) {
  let candidate = String(name).replace(/[\x00-\x1f\x7f-\x9f]/g, "").replace(/[\\/]/g, "_");
  if (codePoints(candidate) > MAX_FILE_NAME_CHARS) {
    const dot = candidate.lastIndexOf(".");
    const extension = dot > 0 && candidate.length - dot <= 16 ? candidate.slice(dot) : "";
    candidate = [...candidate].slice(0, MAX_FILE_NAME_CHARS - extension.length).join("") + extension;
  }
  if (candidate === "" || candidate === "." || candidate === ".." || /[\ud800-\udfff]/u.test(candidate)) return null;
  return candidate;
}

/**
 * The protocol over one RTCDataChannel at a time (an ICE restart brings a new channel behind the same
 * protocol state). Incoming messages are processed strictly in order; `onEvent(event)` gets each event,
 * `onError(error)` each refused message (after the file-ack ok false it calls for, already sent).
 */
export class ConsultChannel {
  constructor({ onEvent, onError, onOpen = () => {}, onClose = () => {} }) {
    this.protocol = new DataChannelProtocol("doctor");
    this.onEvent = onEvent;
    this.onError = onError;
    this.onOpen = onOpen;
    this.onClose = onClose;
    this.channel = null;
    this.queue = Promise.resolve();
  }

  get isOpen() {
    return this.channel !== null && this.channel.readyState === "open";
  }

  attach(channel) {
    if (this.channel !== null) this.detach();
    this.channel = channel;
    channel.binaryType = "arraybuffer";
    channel.bufferedAmountLowThreshold = 256 * 1024;
    channel.onmessage = (event) => {
      const data = typeof event.data === "string" ? event.data : new Uint8Array(event.data);
      this.queue = this.queue.then(() => this.handle(data));
    };
    channel.onopen = () => this.onOpen();
    channel.onclose = () => {
      if (this.channel === channel) this.onClose();
    };
    if (channel.readyState === "open") this.onOpen();
  }

  detach() {
    if (this.channel !== null) {
      this.channel.onmessage = this.channel.onopen = this.channel.onclose = null;
      this.channel = null;
    }
  }

  close() {
    const channel = this.channel;
    this.detach();
    if (channel !== null) channel.close();
    for (const transfer of this.protocol.incomingTransfers) this.protocol.incoming.get(transfer).discard();
    this.protocol.incoming.clear();
  }

  async handle(data) {
    let events;
    try {
      events = await this.protocol.receiveMessage(data);
    } catch (error) {
      if (!(error instanceof DataChannelError)) throw error;
      // A broken or refused incoming transfer gets its file-ack ok false (never an answer to a file-ack:
      // two ends doing that to each other would loop).
      const transfer = error.transfer;
      const open = transfer !== null && this.protocol.incoming.has(transfer);
      if (transfer !== null && ([Reason.TRANSFER, Reason.BUSY].includes(error.reason) || open)) {
        this.trySend(() => this.protocol.sendFileAck(error.transfer, false, error.message.slice(0, MAX_REASON_CHARS)));
      }
      this.onError(error);
      return;
    }
    for (const event of events) {
      if (event.type === "file-received") {
        this.trySend(() => this.protocol.sendFileAck(event.transfer, true));
      }
      this.onEvent(event);
    }
  }

  trySend(build) {
    if (!this.isOpen) return false;
    this.channel.send(build());
    return true;
  }

  /** Send a chat line; false when the channel is not open. */
  chat(text) {
    return this.trySend(() => this.protocol.sendChat(text));
  }

  /** Send a command; its id, or null when the channel is not open. */
  command(command, camera = null) {
    if (!this.isOpen) return null;
    const { id, text } = this.protocol.sendCommand(command, camera);
    this.channel.send(text);
    return id;
  }

  /** Send a whole file with back-pressure; onProgress(sentBytes, size). Resolves when file-done is sent. */
  async sendFile(sender, onProgress = () => {}) {
    if (!this.isOpen) throw new DataChannelError(Reason.TRANSFER, "the data channel is not open");
    this.channel.send(this.protocol.offerFile(sender));
    let sent = 0;
    for (const text of this.protocol.fileMessages(sender)) {
      const channel = this.channel;
      if (channel === null || channel.readyState !== "open") {
        this.protocol.outgoing.delete(sender.transfer);
        throw new DataChannelError(Reason.TRANSFER, "the data channel closed during the transfer");
      }
      if (channel.bufferedAmount > 4 * 1024 * 1024) {
        await new Promise((resolve) => {
          channel.addEventListener("bufferedamountlow", resolve, { once: true });
          channel.addEventListener("close", resolve, { once: true });
        });
      }
      if (channel.readyState !== "open") continue; // the check at the top of the loop reports it
      channel.send(text);
      sent = Math.min(sender.data.length, sent + sender.chunkSize);
      onProgress(sent, sender.data.length);
    }
  }
}
