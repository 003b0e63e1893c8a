// Binding DTLS fingerprints to fleet identities: the console's mirror of
// kiosk/session/binding.py (authoritative), with WebCrypto.
//
// The booth signs its DTLS fingerprint with its device key; its certificate
// chains to the fleet CA. The console checks all of it BEFORE answering an
// offer: the offer's a=fingerprint equals the signed one, every certificate
// of the chain is valid now and signed by the next one (the last by the fleet
// root from /api/config), issuers are CAs, the leaf is a booth certificate
// (OU "booth", not a CA) whose CN is the booth the hub announced, and the
// ECDSA P-256 signature covers
//     "kiosk-dtls-binding-v1" \0 role \0 session \0 normalised fingerprint.
// The doctor's side signs the same message with its per-login WebCrypto key.
//
// Signatures on the wire are DER (what Python's cryptography produces and
// expects), base64url without padding; WebCrypto speaks raw r||s, hence
// derToRaw / rawToDer. Certificates are parsed here (DER, X.509 v3): no
// library, so only what the fleet PKI uses is accepted: ECDSA P-256 keys and
// ecdsa-with-SHA256 signatures.

import { bytesEqual, concat, fromBase64, fromBase64Url, toBase64Url, utf8 } from "./util.js";

/** Why a binding was refused: the values of binding.Reason, plus the console's own checks. */
export const Reason = Object.freeze({
  MALFORMED: "malformed",
  BAD_SIGNATURE: "bad_signature",
  UNTRUSTED_CERTIFICATE: "untrusted_certificate",
  EXPIRED: "expired",
  WRONG_ROLE: "wrong_role",
  // Console checks beyond verify_binding (contract, call setup step 3):
  WRONG_NAME: "wrong_name",
  FINGERPRINT_MISMATCH: "fingerprint_mismatch",
  MISSING_IDENTITY: "missing_identity",
  NO_FLEET_CA: "no_fleet_ca",
});

export class BindingError extends Error {
  constructor(reason, message) {
    super(message);
    this.name = "BindingError";
    this.reason = reason;
  }
}

export const ROLES = Object.freeze(["booth", "doctor"]);
export const MAX_CHAIN = 4;
const CONTEXT = "kiosk-dtls-binding-v1";
const FINGERPRINT = /^\s*sha-256\s+((?:[0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2})\s*$/;
const SDP_FINGERPRINT = /^a=fingerprint:(.+?)\s*$/gm;

const OID = Object.freeze({
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  ecPublicKey: "1.2.840.10045.2.1",
  p256: "1.2.840.10045.3.1.7",
  commonName: "2.5.4.3",
  organizationalUnit: "2.5.4.11",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
});
/** Extensions this verifier understands; any other marked critical makes a certificate unusable (RFC 5280 4.2). */
const KNOWN_EXTENSIONS = new Set([
  OID.subjectKeyIdentifier,
  OID.keyUsage,
  OID.subjectAltName,
  OID.basicConstraints,
  OID.authorityKeyIdentifier,
  OID.extKeyUsage,
]);

// -- fingerprints and the signed message ------------------------------------------------
/** "sha-256 AB:CD:..." with upper-case hex; anything else is MALFORMED. */
export function normaliseFingerprint(fingerprint) {
  const match = typeof fingerprint === "string" ? FINGERPRINT.exec(fingerprint) : null;
  if (match === null) throw new BindingError(Reason.MALFORMED, "the DTLS fingerprint is not a SHA-256 fingerprint");
  return `sha-256 ${match[1].toUpperCase()}`;
}

/** The one DTLS fingerprint of a session description (all its a=fingerprint lines must agree). */
export function fingerprintOfSdp(sdp) {
  const found = new Set();
  for (const match of String(sdp).matchAll(SDP_FINGERPRINT)) found.add(normaliseFingerprint(match[1]));
  if (found.size !== 1) {
    throw new BindingError(Reason.MALFORMED, "the session description must carry exactly one DTLS fingerprint");
  }
  return [...found][0];
}

/** What a side signs: domain, role and session separate each use of a key. */
export function bindingMessage(fingerprint, role, session) {
  if (!ROLES.includes(role)) throw new BindingError(Reason.WRONG_ROLE, `unknown role ${role}`);
  if (typeof session !== "string" || !/^[\x20-\x7e]*$/.test(session)) {
    throw new BindingError(Reason.MALFORMED, "the session id is not printable ASCII");
  }
  return utf8([CONTEXT, role, session, normaliseFingerprint(fingerprint)].join("\0"));
}

// -- ECDSA signature encodings ----------------------------------------------------------------
/** DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs) to WebCrypto's raw r||s; throws on malformed DER. */
export function derToRaw(der, size = 32) {
  const bytes = der instanceof Uint8Array ? der : new Uint8Array(der);
  const sequence = readTlv(bytes, 0, bytes.length);
  if (sequence.tag !== 0x30 || sequence.end !== bytes.length) throw new DerError("not one SEQUENCE");
  const parts = children(bytes, sequence);
  if (parts.length !== 2) throw new DerError("an ECDSA signature holds two integers");
  const out = new Uint8Array(2 * size);
  parts.forEach((part, index) => {
    if (part.tag !== 0x02) throw new DerError("not an INTEGER");
    let value = bytes.subarray(part.valueStart, part.end);
    if (value.length === 0 || value[0] & 0x80) throw new DerError("an ECDSA integer is positive");
    if (value.length > 1 && value[0] === 0 && !(value[1] & 0x80)) throw new DerError("non-minimal INTEGER");
    if (value[0] === 0) value = value.subarray(1);
    if (value.length > size) throw new DerError("integer larger than the curve");
    out.set(value, index * size + size - value.length);
  });
  return out;
}

/** WebCrypto's raw r||s to DER, as Python's cryptography expects. */
export function rawToDer(raw) {
  const bytes = raw instanceof Uint8Array ? raw : new Uint8Array(raw);
  if (bytes.length === 0 || bytes.length % 2) throw new DerError("raw signature of odd length");
  const half = bytes.length / 2;
  const integer = (value) => {
    let start = 0;
    while (start < value.length - 1 && value[start] === 0) start++;
    let body = value.subarray(start);
    if (body[0] & 0x80) body = concat(new Uint8Array([0]), body);
    return concat(new Uint8Array([0x02]), encodeLength(body.length), body);
  };
  const content = concat(integer(bytes.subarray(0, half)), integer(bytes.subarray(half)));
  return concat(new Uint8Array([0x30]), encodeLength(content.length), content);
}

function encodeLength(length) {
  if (length < 0x80) return new Uint8Array([length]);
  const out = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) out.unshift(rest & 0xff);
  return new Uint8Array([0x80 | out.length, ...out]);
}

// -- DER ------------------------------------------------------------------------------------------
export class DerError extends Error {}

/** One tag-length-value at `offset`, inside [offset, limit). */
function readTlv(bytes, offset, limit) {
  if (offset + 2 > limit) throw new DerError("truncated");
  const tag = bytes[offset];
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte tags are not used in certificates");
  let length = bytes[offset + 1];
  let valueStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4 || valueStart + count > limit) throw new DerError("bad length");
    length = 0;
    for (let k = 0; k < count; k++) length = length * 256 + bytes[valueStart + k];
    if (length < 0x80 || bytes[valueStart] === 0) throw new DerError("non-minimal length");
    valueStart += count;
  }
  const end = valueStart + length;
  if (end > limit) throw new DerError("truncated");
  return { tag, start: offset, valueStart, end };
}

/** The TLVs filling a constructed value exactly. */
function children(bytes, tlv) {
  const out = [];
  for (let offset = tlv.valueStart; offset < tlv.end; ) {
    const child = readTlv(bytes, offset, tlv.end);
    out.push(child);
    offset = child.end;
  }
  return out;
}

const value = (bytes, tlv) => bytes.subarray(tlv.valueStart, tlv.end);
const whole = (bytes, tlv) => bytes.subarray(tlv.start, tlv.end);

function expect(tlv, tag, what) {
  if (tlv === undefined || tlv.tag !== tag) throw new DerError(`expected ${what}`);
  return tlv;
}

function readOid(bytes, tlv) {
  const body = value(bytes, expect(tlv, 0x06, "an OBJECT IDENTIFIER"));
  if (body.length === 0 || body[body.length - 1] & 0x80) throw new DerError("bad OID");
  const arcs = [];
  let current = 0;
  for (let k = 0; k < body.length; k++) {
    if (current === 0 && body[k] === 0x80) throw new DerError("non-minimal OID arc");
    current = current * 128 + (body[k] & 0x7f);
    if (current > Number.MAX_SAFE_INTEGER / 128) throw new DerError("OID arc too large");
    if (!(body[k] & 0x80)) {
      arcs.push(current);
      current = 0;
    }
  }
  const first = arcs[0] < 40 ? 0 : arcs[0] < 80 ? 1 : 2;
  return [first, arcs[0] - first * 40, ...arcs.slice(1)].join(".");
}

function readBoolean(bytes, tlv) {
  const body = value(bytes, expect(tlv, 0x01, "a BOOLEAN"));
  if (body.length !== 1 || (body[0] !== 0 && body[0] !== 0xff)) throw new DerError("bad BOOLEAN");
  return body[0] === 0xff;
}

function readSmallInteger(bytes, tlv) {
  const body = value(bytes, expect(tlv, 0x02, "an INTEGER"));
  if (body.length === 0 || body.length > 4 || body[0] & 0x80) throw new DerError("unexpected INTEGER");
  return body.reduce((acc, byte) => acc * 256 + byte, 0);
}

function readTime(bytes, tlv) {
  const text = String.fromCharCode(...value(bytes, tlv));
  let match;
  let year;
  if (tlv.tag === 0x17 && (match = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text))) {
    year = Number(match[1]) < 50 ? 2000 + Number(match[1]) : 1900 + Number(match[1]); // RFC 5280 4.1.2.5.1
  } else if (tlv.tag === 0x18 && (match = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text))) {
    year = Number(match[1]);
  } else {
    throw new DerError("bad time");
  }
  const [month, day, hour, minute, second] = match.slice(2).map(Number);
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) {
    throw new DerError("bad time");
  }
  return date;
}

const STRING_DECODERS = {
  0x0c: (b) => new TextDecoder("utf-8", { fatal: true }).decode(b), // UTF8String
  0x13: (b) => String.fromCharCode(...b), // PrintableString
  0x16: (b) => String.fromCharCode(...b), // IA5String
  0x14: (b) => String.fromCharCode(...b), // TeletexString, read as Latin-1 like cryptography
  0x1e: (b) => new TextDecoder("utf-16be", { fatal: true }).decode(b), // BMPString
};

function readName(bytes, tlv) {
  const attributes = [];
  for (const set of children(bytes, expect(tlv, 0x30, "a Name"))) {
    const pairs = children(bytes, expect(set, 0x31, "a RelativeDistinguishedName"));
    if (pairs.length === 0) throw new DerError("empty RDN");
    for (const pair of pairs) {
      const [type, text] = children(bytes, expect(pair, 0x30, "an AttributeTypeAndValue"));
      if (text === undefined) throw new DerError("attribute without value");
      const decode = STRING_DECODERS[text.tag];
      let decoded = null;
      if (decode !== undefined) {
        try {
          decoded = decode(value(bytes, text));
        } catch {
          throw new DerError("undecodable name");
        }
      }
      attributes.push({ oid: readOid(bytes, type), value: decoded });
    }
  }
  return attributes;
}

function readAlgorithm(bytes, tlv) {
  const parts = children(bytes, expect(tlv, 0x30, "an AlgorithmIdentifier"));
  return { oid: readOid(bytes, parts[0]), parameters: parts[1], der: whole(bytes, tlv), count: parts.length };
}

function readSpki(bytes, tlv) {
  const [algorithm, key] = children(bytes, expect(tlv, 0x30, "a SubjectPublicKeyInfo"));
  const alg = readAlgorithm(bytes, algorithm);
  expect(key, 0x03, "a BIT STRING");
  const curve = alg.parameters !== undefined && alg.parameters.tag === 0x06 ? readOid(bytes, alg.parameters) : null;
  return { algorithm: alg.oid, curve, der: whole(bytes, tlv) };
}

function readExtensions(bytes, tlv) {
  const extensions = new Map();
  const list = children(bytes, expect(tlv, 0x30, "Extensions"));
  if (list.length === 0) throw new DerError("empty extensions");
  for (const item of list) {
    const parts = children(bytes, expect(item, 0x30, "an Extension"));
    const oid = readOid(bytes, parts[0]);
    let index = 1;
    let critical = false;
    if (parts[index] !== undefined && parts[index].tag === 0x01) critical = readBoolean(bytes, parts[index++]);
    const content = expect(parts[index++], 0x04, "an OCTET STRING");
    if (index !== parts.length) throw new DerError("extra fields in an extension");
    if (extensions.has(oid)) throw new DerError("duplicate extension");
    extensions.set(oid, { critical, value: value(bytes, content) });
  }
  return extensions;
}

function readBasicConstraints(extension) {
  if (extension === undefined) return false;
  const bytes = extension.value;
  const sequence = readTlv(bytes, 0, bytes.length);
  if (sequence.tag !== 0x30 || sequence.end !== bytes.length) throw new DerError("bad BasicConstraints");
  const parts = children(bytes, sequence);
  if (parts.length > 0 && parts[0].tag === 0x01) return readBoolean(bytes, parts[0]);
  return false;
}

function readKeyUsage(extension) {
  if (extension === undefined) return null;
  const bytes = extension.value;
  const bits = readTlv(bytes, 0, bytes.length);
  if (bits.tag !== 0x03 || bits.end !== bytes.length || bits.end - bits.valueStart < 1) {
    throw new DerError("bad KeyUsage");
  }
  const body = value(bytes, bits);
  const flags = (index) => body.length > 1 + (index >> 3) && (body[1 + (index >> 3)] & (0x80 >> (index & 7))) !== 0;
  return { digitalSignature: flags(0), keyCertSign: flags(5) };
}

/** A certificate from DER: what verification needs, and the exact bytes it covers. */
export function parseCertificate(der) {
  const bytes = der instanceof Uint8Array ? der : new Uint8Array(der);
  const certificate = readTlv(bytes, 0, bytes.length);
  if (certificate.tag !== 0x30 || certificate.end !== bytes.length) throw new DerError("not one certificate");
  const [tbs, outerAlgorithm, signature, ...extra] = children(bytes, certificate);
  if (extra.length) throw new DerError("extra data in the certificate");
  const fields = children(bytes, expect(tbs, 0x30, "TBSCertificate"));
  let k = 0;
  let version = 0;
  if (fields[k] !== undefined && fields[k].tag === 0xa0) {
    const inner = children(bytes, fields[k++]);
    if (inner.length !== 1) throw new DerError("bad version");
    version = readSmallInteger(bytes, inner[0]);
    if (version > 2) throw new DerError("unknown certificate version");
  }
  const serial = value(bytes, expect(fields[k++], 0x02, "a serial number"));
  // cryptography refuses (warns, which binding.py turns into an error) serial numbers <= 0.
  if (serial.length === 0 || serial[0] & 0x80 || serial.every((byte) => byte === 0)) {
    throw new DerError("the serial number must be positive");
  }
  const innerAlgorithm = readAlgorithm(bytes, fields[k++]);
  const issuerTlv = expect(fields[k++], 0x30, "the issuer");
  const validity = children(bytes, expect(fields[k++], 0x30, "the validity"));
  if (validity.length !== 2) throw new DerError("bad validity");
  const subjectTlv = expect(fields[k++], 0x30, "the subject");
  const spki = readSpki(bytes, fields[k++]);
  if (fields[k] !== undefined && fields[k].tag === 0x81) k++; // issuerUniqueID
  if (fields[k] !== undefined && fields[k].tag === 0x82) k++; // subjectUniqueID
  let extensions = new Map();
  if (fields[k] !== undefined && fields[k].tag === 0xa3) {
    const inner = children(bytes, fields[k++]);
    if (inner.length !== 1 || version !== 2) throw new DerError("extensions need a v3 certificate");
    extensions = readExtensions(bytes, inner[0]);
  }
  if (k !== fields.length) throw new DerError("unexpected fields in TBSCertificate");
  const algorithm = readAlgorithm(bytes, outerAlgorithm);
  if (!bytesEqual(algorithm.der, innerAlgorithm.der)) throw new DerError("the two signature algorithms differ");
  const signatureBits = value(bytes, expect(signature, 0x03, "the signature"));
  if (signatureBits.length < 1 || signatureBits[0] !== 0) throw new DerError("bad signature BIT STRING");
  const subject = readName(bytes, subjectTlv);
  readName(bytes, issuerTlv);
  return {
    der: bytes,
    tbs: whole(bytes, tbs),
    signatureAlgorithm: algorithm.oid,
    signatureAlgorithmHasParameters: algorithm.count > 1,
    signature: signatureBits.subarray(1),
    issuerDer: whole(bytes, issuerTlv),
    subjectDer: whole(bytes, subjectTlv),
    subject,
    notBefore: readTime(bytes, validity[0]),
    notAfter: readTime(bytes, validity[1]),
    spki,
    isCa: readBasicConstraints(extensions.get(OID.basicConstraints)),
    keyUsage: readKeyUsage(extensions.get(OID.keyUsage)),
    unknownCritical: [...extensions].some(([oid, ext]) => ext.critical && !KNOWN_EXTENSIONS.has(oid)),
  };
}

/** Every CERTIFICATE block of a PEM text, parsed (leaf first); throws DerError. */
export function parsePemChain(pem) {
  if (typeof pem !== "string") throw new DerError("not PEM text");
  const blocks = [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)];
  if (blocks.length === 0) throw new DerError("no certificate in the PEM text");
  return blocks.map((block) => {
    const der = fromBase64(block[1].replace(/[\r\n\t ]/g, ""));
    if (der === null) throw new DerError("bad base64 in PEM");
    return parseCertificate(der);
  });
}

/** The first common name of a parsed certificate, or "". */
export function commonName(certificate) {
  return certificate.subject.find((a) => a.oid === OID.commonName)?.value ?? "";
}

/** The role a certificate's OU names (exactly one of ROLES among its units), or null. */
export function roleOf(certificate) {
  const units = new Set(certificate.subject.filter((a) => a.oid === OID.organizationalUnit).map((a) => a.value));
  const roles = ROLES.filter((role) => units.has(role));
  return roles.length === 1 ? roles[0] : null;
}

async function importP256(spki, usage) {
  if (spki.algorithm !== OID.ecPublicKey || spki.curve !== OID.p256) return null;
  try {
    return await crypto.subtle.importKey("spki", spki.der, { name: "ECDSA", namedCurve: "P-256" }, false, [usage]);
  } catch {
    return null;
  }
}

async function verifyEcdsa(spki, derSignature, data) {
  const key = await importP256(spki, "verify");
  if (key === null) return false;
  let raw;
  try {
    raw = derToRaw(derSignature);
  } catch {
    return false;
  }
  return crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, raw, data);
}

async function directlyIssuedBy(child, issuer) {
  if (!bytesEqual(child.issuerDer, issuer.subjectDer)) return false;
  if (child.signatureAlgorithm !== OID.ecdsaWithSha256 || child.signatureAlgorithmHasParameters) return false;
  return verifyEcdsa(issuer.spki, child.signature, child.tbs);
}

/** The leaf of a PEM chain (leaf first) once every link up to the fleet root checks out (FleetTrust.verify_chain). */
export async function verifyChain(chainPem, rootPem, now = new Date()) {
  if (typeof rootPem !== "string" || rootPem === "") {
    throw new BindingError(Reason.NO_FLEET_CA, "no fleet CA to verify against");
  }
  let root;
  try {
    [root] = parsePemChain(rootPem);
  } catch {
    throw new BindingError(Reason.NO_FLEET_CA, "the fleet CA is unreadable");
  }
  let chain;
  try {
    chain = parsePemChain(chainPem);
  } catch {
    throw new BindingError(Reason.MALFORMED, "the certificate is not a valid PEM certificate chain");
  }
  if (chain.length < 1 || chain.length > MAX_CHAIN) {
    throw new BindingError(Reason.MALFORMED, "the certificate chain has no or too many certificates");
  }
  for (const cert of [...chain, root]) {
    if (!(cert.notBefore <= now && now <= cert.notAfter)) {
      throw new BindingError(Reason.EXPIRED, "a certificate of the chain is not valid at this time");
    }
  }
  const issuers = [...chain.slice(1), root];
  for (let i = 0; i < chain.length; i++) {
    const issuer = issuers[i];
    if (!issuer.isCa || (issuer.keyUsage !== null && !issuer.keyUsage.keyCertSign)) {
      throw new BindingError(Reason.UNTRUSTED_CERTIFICATE, "a certificate was issued by a non-CA certificate");
    }
    if (chain[i].unknownCritical || !(await directlyIssuedBy(chain[i], issuer))) {
      throw new BindingError(Reason.UNTRUSTED_CERTIFICATE, "the certificate is not issued by the fleet");
    }
  }
  return chain[0];
}

/**
 * Check a peer's signed fingerprint (binding.verify_binding); resolves to {role, name, fingerprint}
 * or rejects with a BindingError. `expectedName`, when given, must equal the leaf's CN.
 */
export async function verifyBinding({ fingerprint, signature, certificate, role, session, fleetCa, now, expectedName }) {
  const leaf = await verifyChain(certificate, fleetCa, now ?? new Date());
  if (roleOf(leaf) !== role) throw new BindingError(Reason.WRONG_ROLE, `the certificate is not a ${role} certificate`);
  if (leaf.isCa) throw new BindingError(Reason.WRONG_ROLE, "a CA certificate cannot sign a binding");
  const der = fromBase64Url(signature);
  if (der === null) throw new BindingError(Reason.MALFORMED, "the signature is not base64url");
  const message = bindingMessage(fingerprint, role, session);
  if (leaf.keyUsage !== null && !leaf.keyUsage.digitalSignature) {
    throw new BindingError(Reason.WRONG_ROLE, "the certificate may not sign");
  }
  if (leaf.spki.algorithm !== OID.ecPublicKey || leaf.spki.curve !== OID.p256) {
    throw new BindingError(Reason.UNTRUSTED_CERTIFICATE, "the certificate's key type is not accepted");
  }
  if (!(await verifyEcdsa(leaf.spki, der, message))) {
    throw new BindingError(Reason.BAD_SIGNATURE, "the fingerprint's signature does not verify");
  }
  const name = commonName(leaf);
  if (expectedName !== undefined && name !== expectedName) {
    throw new BindingError(Reason.WRONG_NAME, "the certificate names another booth");
  }
  return { role, name, fingerprint: normaliseFingerprint(fingerprint) };
}

/**
 * Everything the console checks before answering the booth's first offer (contract, call setup step 3):
 * identity {fingerprint, signature, certificate} from the booth, its offer SDP, the session and the booth
 * name from the hub's `session` message, the fleet root PEM.
 */
export async function verifyBoothOffer({ identity, offerSdp, session, booth, fleetCa, now }) {
  if (identity === null || identity === undefined) {
    throw new BindingError(Reason.MISSING_IDENTITY, "the booth sent no identity before its offer");
  }
  const offered = fingerprintOfSdp(offerSdp);
  if (offered !== normaliseFingerprint(identity.fingerprint)) {
    throw new BindingError(Reason.FINGERPRINT_MISMATCH, "the offer's fingerprint is not the signed one");
  }
  return verifyBinding({
    fingerprint: identity.fingerprint,
    signature: identity.signature,
    certificate: identity.certificate,
    role: "booth",
    session,
    fleetCa,
    now,
    expectedName: booth,
  });
}

/** Sign our own DTLS fingerprint with a WebCrypto ECDSA P-256 private key; base64url DER, no padding. */
export async function signFingerprint(fingerprint, privateKey, role, session) {
  const message = bindingMessage(fingerprint, role, session);
  const raw = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, privateKey, message);
  return toBase64Url(rawToDer(new Uint8Array(raw)));
}

/** The SubjectPublicKeyInfo DER of the first certificate of a PEM chain. */
export function leafSpki(chainPem) {
  return parsePemChain(chainPem)[0].spki.der;
}
