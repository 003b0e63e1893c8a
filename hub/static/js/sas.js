// The short authentication string (SAS) of a call, as kiosk/session/binding.py computes it:
//   material = booth fingerprint + "\n" + doctor fingerprint (both normalised, UTF-8)
//   okm = HKDF-SHA256(ikm = material, salt = session id, info = "kiosk-sas-v1", 8 bytes)
//   digits = uint32 big-endian of okm[0..4] mod 1e6, six digits shown "ddd ddd"
//   words = SAS_WORDS[okm[4]] .. SAS_WORDS[okm[7]]
// The booth's fingerprint always comes first, whoever computes it.

import { normaliseFingerprint } from "./binding.js";
import { utf8 } from "./util.js";

/** The 256 words, in the order of binding.SAS_WORDS (a test compares both tables). */
export const SAS_WORDS = Object.freeze([
  "abeille", "abri", "acier", "agneau", "aigle", "aiguille", "ail", "allee", "amande", "ami", "ancre", "ane",
  "angle", "anneau", "arbre", "arche", "argent", "arome", "atelier", "aube", "autruche", "avion", "avoine", "bague",
  "baie", "balai", "balcon", "baleine", "ballon", "banane", "banc", "barque", "bassin", "bateau", "baton", "berger",
  "beurre", "biche", "bijou", "bison", "blason", "bol", "bonbon", "bouchon", "bougie", "boussole", "bouton",
  "branche", "brebis", "brique", "brume", "bureau", "cabane", "cactus", "cadeau", "cadre", "caillou", "calme",
  "camion", "canard", "canne", "carotte", "carte", "castor", "cerise", "chaise", "chalet", "chameau", "champ",
  "chapeau", "charbon", "chat", "chateau", "chemin", "chene", "cheval", "chevre", "chien", "cigale", "citron",
  "clairon", "clef", "cloche", "clou", "cochon", "coffre", "colline", "comete", "concert", "copain", "coq", "corde",
  "corne", "coton", "coude", "coussin", "crabe", "craie", "crayon", "creme", "criquet", "cuivre", "cygne", "dauphin",
  "desert", "diamant", "domino", "dragon", "drapeau", "dune", "echelle", "ecureuil", "etoile", "falaise", "farine",
  "fenetre", "ferme", "feuille", "figue", "flamme", "fleur", "flute", "foret", "fourmi", "fraise", "fromage",
  "fusee", "gant", "gateau", "gazelle", "girafe", "glace", "gomme", "gorille", "grenier", "grille", "guitare",
  "hache", "hamac", "harpe", "herisson", "hibou", "horloge", "ile", "jardin", "jasmin", "jouet", "jument", "kiwi",
  "lac", "laine", "lama", "lampe", "lapin", "laurier", "lavande", "levier", "lezard", "lievre", "lilas", "lime",
  "lion", "livre", "loup", "lune", "lutin", "maison", "manteau", "marche", "marmotte", "marteau", "melon", "miel",
  "miroir", "montagne", "mouette", "moulin", "mouton", "muguet", "mulet", "navet", "neige", "nuage", "oasis",
  "ocean", "oeuf", "oignon", "olive", "orage", "orange", "orchidee", "ours", "paille", "palmier", "panda", "panier",
  "papillon", "parc", "pelle", "perle", "phare", "piano", "pigeon", "pinceau", "pirate", "plage", "plume", "poire",
  "pomme", "pont", "potiron", "poule", "prairie", "prune", "puits", "quai", "radis", "raisin", "rameau", "renard",
  "requin", "riviere", "robot", "rocher", "rose", "roue", "ruban", "sable", "sapin", "savon", "serpent", "singe",
  "soleil", "sommet", "source", "souris", "sucre", "tambour", "tapis", "tigre", "tomate", "tortue", "toupie",
  "train", "tresor", "trompette", "tulipe", "vague", "vallee", "vanille", "velo", "violon", "volcan", "yaourt",
  "zebre", "zeste",
]);

if (SAS_WORDS.length !== 256 || new Set(SAS_WORDS).size !== 256) {
  throw new Error("the SAS word list must hold 256 distinct words");
}

/** {digits: "042 917", words: [4 words]} for the two fingerprints and the session id. */
export async function shortAuthenticationString(boothFingerprint, doctorFingerprint, session) {
  const material = utf8(normaliseFingerprint(boothFingerprint) + "\n" + normaliseFingerprint(doctorFingerprint));
  const key = await crypto.subtle.importKey("raw", material, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: utf8(session), info: utf8("kiosk-sas-v1") },
    key,
    64,
  );
  const okm = new Uint8Array(bits);
  const number = new DataView(bits).getUint32(0, false) % 1_000_000;
  const digits = String(number).padStart(6, "0");
  return {
    digits: `${digits.slice(0, 3)} ${digits.slice(3)}`,
    words: [SAS_WORDS[okm[4]], SAS_WORDS[okm[5]], SAS_WORDS[okm[6]], SAS_WORDS[okm[7]]],
  };
}
