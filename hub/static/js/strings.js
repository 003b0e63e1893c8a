// Every text the console shows, in one place so it can be translated.
// Keys are stable; index.html refers to them with data-i18n="key" (text) and
// data-i18n-label="key" (aria-label). {name} placeholders are filled by t().

export const STRINGS = {
  fr: {
    title: "Console médecin — téléconsultation",
    heading: "Console médecin",
    skip: "Aller au contenu",

    // login
    loginLegend: "Connexion",
    username: "Identifiant",
    password: "Mot de passe",
    loginSubmit: "Continuer",
    secondFactorLegend: "Second facteur",
    secondFactorHelp: "Confirmez votre identité avec votre clé de sécurité ou le code TOTP de votre application.",
    webauthnLogin: "Utiliser ma clé de sécurité",
    totpCode: "Code TOTP (6 chiffres)",
    totpSubmit: "Valider le code",
    backToLogin: "Recommencer",
    loginFailed: "Identifiant ou mot de passe incorrect.",
    totpFailed: "Code incorrect.",
    locked: "Trop d'essais : compte bloqué temporairement.",
    rateLimited: "Trop de tentatives depuis ce poste ; patientez une minute.",
    sessionExpired: "Votre session a pris fin ; reconnectez-vous.",
    loggedOut: "Vous êtes déconnecté.",
    webauthnFailed: "La clé de sécurité n'a pas été acceptée.",
    webauthnUnavailable: "Ce navigateur ne prend pas en charge les clés de sécurité.",
    networkError: "Le serveur ne répond pas ; réessayez.",
    genericError: "Erreur : {message}",

    // header
    connectedAs: "Connecté : {name}",
    registerKey: "Enregistrer une clé de sécurité",
    keyRegistered: "Clé de sécurité enregistrée ({count} au total).",
    keyCount: "{count} clé(s) de sécurité enregistrée(s).",
    logout: "Se déconnecter",
    identityReady: "Clé d'identité de cette connexion certifiée.",
    identityMissing: "La clé d'identité de cette connexion est introuvable (page rechargée) : reconnectez-vous pour consulter.",
    identityFailed: "Impossible de certifier la clé d'identité : {message}",
    configMissing: "Configuration du serveur indisponible : les appels seront refusés.",

    // waiting room
    roomHeading: "Salle d'attente",
    roomEmpty: "Aucun patient en attente.",
    roomLive: "{count} patient(s) en attente.",
    age: "{age} ans",
    waiting: "attend depuis {time}",
    accept: "Prendre en charge",
    acceptPatient: "Prendre en charge {name}",
    takenByOther: "Ce patient a été pris en charge par un autre médecin.",
    busy: "Terminez d'abord la consultation en cours.",
    noIdentity: "La clé d'identité n'est pas certifiée : reconnectez-vous.",
    socketLost: "Connexion au serveur perdue ; reconnexion…",
    socketReady: "Connecté à la salle d'attente.",

    // call
    callHeading: "Consultation",
    patientVideo: "Patient",
    examVideo: "Caméra d'examen",
    selfVideo: "Vous",
    bindingPending: "Vérification de l'identité de la cabine…",
    bindingOk: "Cabine {name} authentifiée : certificat de la flotte et empreinte DTLS signée vérifiés.",
    bindingRefused: "Appel refusé : l'identité de la cabine n'a pas pu être vérifiée ({reason}). Aucune réponse n'a été envoyée.",
    reason_malformed: "données mal formées",
    reason_bad_signature: "signature invalide",
    reason_untrusted_certificate: "certificat non émis par la flotte",
    reason_expired: "certificat expiré ou pas encore valide",
    reason_wrong_role: "ce n'est pas un certificat de cabine",
    reason_wrong_name: "le certificat ne correspond pas à la cabine annoncée",
    reason_fingerprint_mismatch: "l'empreinte DTLS de l'offre diffère de l'empreinte signée",
    reason_missing_identity: "la cabine n'a pas envoyé son identité",
    reason_no_fleet_ca: "autorité de la flotte inconnue",
    sasHeading: "Code de sécurité à comparer à voix haute",
    sasHelp: "Demandez au patient de lire le code affiché sur la cabine. S'il est identique, confirmez.",
    sasDigits: "Chiffres",
    sasWords: "Mots",
    sasVerified: "Codes identiques",
    sasMismatch: "Codes différents : raccrocher",
    sasConfirmed: "Code de sécurité confirmé.",
    sasMismatchEnded: "Codes différents : la consultation a été interrompue.",
    state_idle: "Aucun appel",
    state_waiting: "En attente de l'offre de la cabine…",
    state_verifying: "Vérification…",
    state_refused: "Refusé",
    state_connecting: "Connexion…",
    state_connected: "Connecté",
    state_reconnecting: "Reconnexion…",
    state_ended: "Terminé",
    endCall: "Terminer la consultation",
    backToRoom: "Retour à la salle d'attente",
    callEnded: "Consultation terminée ({reason}).",
    endedByBooth: "La cabine a mis fin à la consultation.",
    mediaUnavailable: "Caméra ou micro indisponible : le patient ne vous verra pas.",

    // peripherals
    peripheralsHeading: "Périphériques",
    peripheralsLocked: "Disponibles après confirmation du code de sécurité.",
    oximeter: "Oxymètre",
    oxiStart: "Démarrer l'oxymètre",
    oxiStop: "Arrêter l'oxymètre",
    spo2: "SpO₂",
    pulse: "Pouls",
    pleth: "Pléthysmogramme",
    bp: "Tension artérielle",
    bpStart: "Mesurer la tension",
    bpAbort: "Interrompre",
    cuffPressure: "Pression du brassard",
    bpResult: "{systolic}/{diastolic} mmHg (moyenne {mean}, pouls {pulse})",
    thermometer: "Thermomètre",
    tempRead: "Lire la température",
    camera: "Caméra",
    cameraSelect: "Caméra d'examen",
    camera_booth: "Cabine",
    camera_otoscope: "Otoscope",
    camera_dermatoscope: "Dermatoscope",
    stillCapture: "Capturer une image",
    stethoscope: "Stéthoscope",
    stethStart: "Écouter le stéthoscope",
    stethStop: "Couper le stéthoscope",
    deviceStatus: "État des périphériques",
    sent: "Envoyé…",
    accepted: "Accepté",
    refused: "Refusé : {reason}",
    running: "En cours…",
    done: "Terminé",
    failed: "Échec : {reason}",
    stoppedByPatient: "Arrêté par le patient.",
    unavailable: "—",

    // gallery, chat, files
    galleryHeading: "Images capturées",
    galleryEmpty: "Aucune image.",
    galleryItem: "Image {camera} {time} ({width}×{height})",
    openFull: "Ouvrir en taille réelle",
    close: "Fermer",
    download: "Télécharger",
    chatHeading: "Messages",
    chatInput: "Message au patient",
    chatSend: "Envoyer",
    chatMe: "Vous",
    chatPatient: "Patient",
    filesHeading: "Documents",
    fileInput: "Envoyer un document (20 Mio max.)",
    fileTooLarge: "« {name} » dépasse 20 Mio : non envoyé.",
    fileBadName: "Nom de fichier non accepté : « {name} ».",
    fileSending: "Envoi de « {name} »… {percent} %",
    fileSent: "« {name} » envoyé ; en attente de confirmation.",
    fileAcked: "« {name} » reçu par la cabine.",
    fileRefused: "« {name} » refusé par la cabine : {reason}",
    fileReceived: "Reçu : {name} ({size})",
    fileReceiving: "Réception… {percent} %",
    fileCorrupt: "Un fichier reçu était corrompu et a été supprimé.",
    protocolError: "Message de la cabine ignoré ({reason}).",
    channelClosed: "Canal de données fermé.",
    rxHeading: "Ordonnance",
    rxPatient: "Patient",
    rxText: "Prescription (une ligne par médicament)",
    rxSign: "Signer et envoyer à la cabine",
    rxSigning: "Signature de l’ordonnance…",
    rxSent: "Ordonnance {number} signée et envoyée ; code patient : {code}.",
    rxNoCall: "Pas de consultation en cours.",
    rxEmpty: "L’ordonnance est vide.",
    rxDigest: "le PDF signé ne correspond pas à son empreinte",
  },
};

const LANG = STRINGS[document.documentElement.lang] ? document.documentElement.lang : "fr";

/** The text for `key`, with {placeholders} filled from `params`. */
export function t(key, params = {}) {
  const template = STRINGS[LANG][key] ?? STRINGS.fr[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/** Fill the static page: data-i18n (text content), data-i18n-label (aria-label), data-i18n-placeholder. */
export function translatePage(root = document) {
  for (const element of root.querySelectorAll("[data-i18n]")) element.textContent = t(element.dataset.i18n);
  for (const element of root.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  }
  for (const element of root.querySelectorAll("[data-i18n-placeholder]")) {
    element.setAttribute("placeholder", t(element.dataset.i18nPlaceholder));
  }
  document.title = t("title");
}
