// The per-login identity key: an ECDSA P-256 WebCrypto key pair whose
// private half is not extractable, certified once per login by the hub
// (POST /api/identity-key) and used to sign the console's DTLS fingerprint.
//
// The hub certifies one key per login, so a reload must find the same key:
// the CryptoKey objects (structured-cloneable, still non-extractable) and the
// chain are kept in IndexedDB under the account name, and wiped at logout.

import { certifyIdentityKey } from "./api.js";
import { parsePemChain } from "./binding.js";
import { bytesEqual } from "./util.js";

const DB = "kiosk-console";
const STORE = "identity";
let current = null;

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "username" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function withStore(mode, action) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const transaction = db.transaction(STORE, mode);
      const request = action(transaction.objectStore(STORE));
      transaction.oncomplete = () => resolve(request.result);
      transaction.onerror = () => reject(transaction.error);
      transaction.onabort = () => reject(transaction.error);
    });
  } finally {
    db.close();
  }
}

/** The identity in use: {username, privateKey, publicKey, chain} or null. */
export function currentIdentity() {
  return current;
}

/**
 * Make sure this login has a certified identity key. `certified` is /api/me's identity_certified.
 * Resolves to the identity, or null when the hub certified a key this browser no longer holds.
 */
export async function ensureIdentity(username, certified) {
  if (current !== null && current.username === username) return current;
  if (certified) return (current = await loadStored(username));
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
  let chain;
  try {
    chain = await certifyIdentityKey(spki);
  } catch (error) {
    if (error.status === 409) return (current = await loadStored(username)); // another tab was first
    throw error;
  }
  const identity = { username, privateKey: pair.privateKey, publicKey: pair.publicKey, chain };
  try {
    await withStore("readwrite", (store) => store.put(identity));
  } catch {
    // Without IndexedDB (private mode...) the key lives until the page reloads.
  }
  return (current = identity);
}

async function loadStored(username) {
  let stored;
  try {
    stored = await withStore("readonly", (store) => store.get(username));
  } catch {
    return null;
  }
  if (!stored || !stored.privateKey || !stored.chain) return null;
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", stored.publicKey));
  try {
    const [leaf] = parsePemChain(stored.chain);
    if (!bytesEqual(spki, leaf.spki.der) || leaf.notAfter <= new Date()) return null;
  } catch {
    return null;
  }
  return stored;
}

/** Forget the identity (logout, expired session): memory and IndexedDB. */
export async function forgetIdentity() {
  const username = current?.username;
  current = null;
  try {
    if (username) await withStore("readwrite", (store) => store.delete(username));
    else await withStore("readwrite", (store) => store.clear());
  } catch {
    // nothing stored
  }
}
