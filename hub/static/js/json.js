// A strict JSON reader that keeps what JSON.parse loses, so the console can
// apply the same rules as the Python side (json.loads with object_pairs_hook
// and parse_constant):
//   * duplicate keys are an error (JSON.parse keeps the last one silently);
//   * an integer literal (1) and a float literal (1.0, 1e0) stay different:
//     Python's `type(value) is int` refuses 1.0 where an integer is expected;
//   * NaN, Infinity and raw control characters in strings are errors;
//   * nesting is bounded (Python stops at its recursion limit).
// Objects come back as Map (no prototype surprises with "__proto__" keys),
// float literals as JsonFloat, everything else as plain JS values.

export class JsonError extends Error {}

/** A number written with a fraction or an exponent (a Python float). */
export class JsonFloat {
  constructor(value) {
    this.value = value;
  }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;
const ESCAPES = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

/** Parse `text` strictly; throws JsonError. */
export function parseStrictJson(text, maxDepth = 64) {
  let i = 0;
  const n = text.length;

  const fail = (what) => {
    throw new JsonError(`${what} at offset ${i}`);
  };
  const skipSpace = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };

  const readString = () => {
    i++; // opening quote
    let out = "";
    let start = i;
    for (;;) {
      if (i >= n) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        if (e === "u") {
          const hex = text.slice(i + 2, i + 6);
          if (!HEX4.test(hex)) fail("bad \\u escape");
          out += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else if (e !== undefined && Object.hasOwn(ESCAPES, e)) {
          out += ESCAPES[e];
          i += 2;
        } else {
          fail("bad escape");
        }
        start = i;
        continue;
      }
      if (c < 0x20) fail("control character in string");
      i++;
    }
  };

  const readNumber = () => {
    NUMBER.lastIndex = i;
    const match = NUMBER.exec(text);
    if (match === null) fail("bad number");
    i = NUMBER.lastIndex;
    const value = Number(match[0]);
    if (match[1] === undefined && match[2] === undefined) return value === 0 ? 0 : value; // no -0 integers
    return new JsonFloat(value);
  };

  const readValue = (depth) => {
    if (depth > maxDepth) fail("nested too deeply");
    skipSpace();
    const c = text[i];
    if (c === "{") {
      i++;
      const map = new Map();
      skipSpace();
      if (text[i] === "}") {
        i++;
        return map;
      }
      for (;;) {
        skipSpace();
        if (text[i] !== '"') fail("expected a key");
        const key = readString();
        if (map.has(key)) fail("duplicate key");
        skipSpace();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        map.set(key, readValue(depth + 1));
        skipSpace();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return map;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const list = [];
      skipSpace();
      if (text[i] === "]") {
        i++;
        return list;
      }
      for (;;) {
        list.push(readValue(depth + 1));
        skipSpace();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return list;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return readString();
    if (c === "-" || (c >= "0" && c <= "9")) return readNumber();
    for (const [word, value] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return value;
      }
    }
    return fail("unexpected character");
  };

  const value = readValue(0);
  skipSpace();
  if (i !== n) fail("extra data");
  return value;
}

/** An integer literal in low..high (a Python int, not a bool or a float). */
export function isIntegerIn(value, low, high) {
  return typeof value === "number" && Number.isInteger(value) && value >= low && value <= high;
}

/** A finite int or float literal in low..high; returns the number or null. */
export function numberIn(value, low, high) {
  const number = value instanceof JsonFloat ? value.value : value;
  if (typeof number !== "number" || !Number.isFinite(number) || number < low || number > high) return null;
  return number;
}

/** Convert Maps back to plain objects (after validation), JsonFloat to numbers. */
export function plain(value) {
  if (value instanceof Map) {
    // fromEntries defines own properties: a "__proto__" key stays a key.
    return Object.fromEntries(Array.from(value, ([key, item]) => [key, plain(item)]));
  }
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof JsonFloat) return value.value;
  return value;
}
