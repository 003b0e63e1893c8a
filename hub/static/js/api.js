// The hub's HTTP API as the console uses it (contract: "Hub HTTP API for the console").
//
// Cookies are __Host- HttpOnly SameSite=Strict and never visible here; every
// POST is application/json and, after the password step, carries the CSRF
// token the hub handed back (login, second factor, /api/me). Errors come back
// as ApiError(status, code, message) from {"error", "message"} bodies.

import { fromBase64Url, toBase64, toBase64Url } from "./util.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

let csrfToken = "";

/** Forget the CSRF token (after logout or an expired session). */
export function resetCsrf() {
  csrfToken = "";
}

async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (csrfToken) headers["X-CSRF-Token"] = csrfToken;
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
    });
  } catch (error) {
    throw new ApiError(0, "network", String(error?.message ?? error));
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const code = typeof data?.error === "string" ? data.error : `http_${response.status}`;
    const message = typeof data?.message === "string" ? data.message : response.statusText;
    throw new ApiError(response.status, code, message);
  }
  if (data !== null && typeof data.csrf === "string") csrfToken = data.csrf;
  return data;
}

const post = (path, body = {}) => request("POST", path, body);

// -- login ------------------------------------------------------------------------------------
/** Password step: {stage, methods, csrf, expires}; methods defaults to ["totp"] for a hub without WebAuthn. */
export async function login(username, password) {
  const result = await post("/api/login", { username, password });
  const methods = Array.isArray(result.methods) ? result.methods : ["totp"];
  return { ...result, methods };
}

/** TOTP step: {stage: "done", username, display_name, ...}. */
export function loginTotp(code) {
  return post("/api/login/totp", { code });
}

/** WebAuthn step: options from the hub, the authenticator, the assertion back to the hub. */
export async function loginWebauthn() {
  const { publicKey } = await post("/api/login/webauthn/options", {});
  const credential = await navigator.credentials.get({ publicKey: requestOptionsFromJson(publicKey) });
  return post("/api/login/webauthn", { credential: credentialToJson(credential) });
}

/** Register a security key for the logged-in account: {registered, credentials}. */
export async function registerSecurityKey() {
  const { publicKey } = await post("/api/webauthn/register/options", {});
  const credential = await navigator.credentials.create({ publicKey: creationOptionsFromJson(publicKey) });
  return post("/api/webauthn/register", { credential: credentialToJson(credential) });
}

export const me = () => request("GET", "/api/me");
export const config = () => request("GET", "/api/config");
export const logout = () => post("/api/logout", {});
/** Certify this login's identity public key (SPKI DER): the chain PEM (leaf, doctor CA). */
/** A signed prescription: {number, fetch_code, expires, sha256, pdf: base64} (hub/prescription_api.py). */
export const createPrescription = (patient, text) => post("/api/prescriptions", { patient, text });
export const certifyIdentityKey = async (spkiDer) => (await post("/api/identity-key", { spki: toBase64(spkiDer) })).chain;

/** True when this browser can use WebAuthn at all. */
export function webauthnAvailable() {
  return typeof window.PublicKeyCredential === "function" && navigator.credentials !== undefined;
}

// -- WebAuthn L3 JSON forms, with a fallback for browsers without the parse*FromJSON helpers ----------------
const bytesOf = (value) => {
  const bytes = fromBase64Url(value);
  if (bytes === null) throw new ApiError(0, "webauthn", "malformed options from the hub");
  return bytes;
};
const credentialDescriptors = (list) => (list ?? []).map((item) => ({ ...item, id: bytesOf(item.id) }));

export function requestOptionsFromJson(options) {
  if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
    return PublicKeyCredential.parseRequestOptionsFromJSON(options);
  }
  return {
    ...options,
    challenge: bytesOf(options.challenge),
    allowCredentials: credentialDescriptors(options.allowCredentials),
  };
}

export function creationOptionsFromJson(options) {
  if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
    return PublicKeyCredential.parseCreationOptionsFromJSON(options);
  }
  return {
    ...options,
    challenge: bytesOf(options.challenge),
    user: { ...options.user, id: bytesOf(options.user.id) },
    excludeCredentials: credentialDescriptors(options.excludeCredentials),
  };
}

export function credentialToJson(credential) {
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const response = credential.response;
  const encode = (buffer) => (buffer ? toBase64Url(new Uint8Array(buffer)) : undefined);
  const json = {
    id: credential.id,
    rawId: encode(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: { clientDataJSON: encode(response.clientDataJSON) },
  };
  if (response.attestationObject !== undefined) {
    json.response.attestationObject = encode(response.attestationObject);
    json.response.transports = response.getTransports?.() ?? [];
  } else {
    json.response.authenticatorData = encode(response.authenticatorData);
    json.response.signature = encode(response.signature);
    json.response.userHandle = encode(response.userHandle);
  }
  return json;
}
