// The doctor console: views (login, second factor, waiting room, call) wired to the modules.
//
// Stable hooks for browser tests:
// * data-testid on controls and readouts (index.html; queue-entry, accept, gallery-item, file-received,
//   chat-message and device-state are created here). Useful attributes: queue-entry[data-entry],
//   binding-status[data-state = pending|ok|refused][data-reason], call-status[data-state], sas-words[data-words],
//   vital-*/cuff-pressure text, temp-result[data-value], bp-result[data-systolic|diastolic|mean|pulse],
//   pleth-canvas[data-samples], device-state[data-device][data-state], oxi-toggle/steth-toggle[aria-pressed],
//   gallery-item[data-transfer|camera|width|height|url] (url: the still's object URL),
//   file-received[data-transfer|size|sha256|mime] (href: object URL, download: name).
// * window.consoleDebug = {getStats, srtpCipher, sas, state, view} (see the bottom of this file).
//
// Gating: nothing is answered before the booth's binding verifies (call.js); the peripheral panel stays
// disabled until the doctor confirms the SAS; chat and files need the consult channel open.
// Received files, stills, chat and media are wiped from the page when the consultation ends.

import * as api from "./api.js";
import { Reason as BindingReason } from "./binding.js";
import { Call, CallState } from "./call.js";
import { COMMANDS, FileSender, MAX_CHAT_CHARS, MAX_FILE_BYTES, wireMime, wireName } from "./datachannel.js";
import { currentIdentity, ensureIdentity, forgetIdentity } from "./identity.js";
import { PlethChart } from "./pleth.js";
import { bindPrescriptionPanel, resetPrescriptionPanel } from "./prescription.js";
import { encode as encodeSignal, parse as parseSignal } from "./signalling.js";
import { t, translatePage } from "./strings.js";
import { codePoints, humanSize } from "./util.js";

const CLOSE_SESSION = 4401;
const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat("fr-FR", { maximumFractionDigits: 1 });

const app = {
  view: "login",
  user: null,
  config: null,
  socket: null,
  socketRetry: 0,
  queue: [],
  queueAt: 0,
  accepting: null,
  call: null,
  verified: false,
  /** command id -> handlers {name, onAck, onProgress, onResult, onStopped} */
  commands: new Map(),
  oximeterOn: false,
  stethoscopeOn: false,
  bpRunning: false,
  /** still transfer id -> camera, for stills whose image has not arrived yet */
  expectedStills: new Map(),
  /** received transfer id -> {url, blob, name, mime, item} */
  received: new Map(),
  /** decoded stills, closed when the call ends */
  bitmaps: [],
  /** outgoing transfer id -> file name */
  outgoing: new Map(),
  objectUrls: [],
  pleth: null,
};

// -- small UI helpers ------------------------------------------------------------------------
function notice(text) {
  $("notice").textContent = text ?? "";
}

function alertMessage(text) {
  const box = $("alert");
  box.textContent = text ?? "";
  box.hidden = !text;
}

function showView(view) {
  app.view = view;
  for (const [name, id] of [
    ["login", "view-login"],
    ["second-factor", "view-second-factor"],
    ["waiting-room", "view-room"],
    ["call", "view-call"],
  ]) {
    $(id).hidden = name !== view;
  }
  $("account").hidden = app.user === null;
}

function setStatus(id, text, state = "") {
  const element = $(id);
  element.textContent = text;
  element.dataset.state = state;
}

function element(tag, { className, text, testid, attrs } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  if (testid) node.dataset.testid = testid;
  for (const [key, value] of Object.entries(attrs ?? {})) node.setAttribute(key, value);
  return node;
}

function apiErrorText(error) {
  if (!(error instanceof api.ApiError)) return t("genericError", { message: String(error?.message ?? error) });
  if (error.status === 0) return t("networkError");
  if (error.status === 423) return t("locked");
  if (error.status === 429) return t("rateLimited");
  return t("genericError", { message: error.message });
}

// -- login -------------------------------------------------------------------------------------
function showLogin(message) {
  app.user = null;
  showView("login");
  $("login-password").value = "";
  $("totp-code").value = "";
  if (message) notice(message);
  $("login-username").focus();
}

async function submitPassword(event) {
  event.preventDefault();
  alertMessage("");
  const button = $("login-submit");
  button.disabled = true;
  try {
    const result = await api.login($("login-username").value, $("login-password").value);
    $("login-password").value = "";
    const methods = result.methods;
    const webauthn = methods.includes("webauthn") && api.webauthnAvailable();
    $("webauthn-login").hidden = !webauthn;
    $("totp-form").hidden = !methods.includes("totp");
    showView("second-factor");
    notice("");
    (webauthn ? $("webauthn-login") : $("totp-code")).focus();
  } catch (error) {
    alertMessage(error.status === 401 ? t("loginFailed") : apiErrorText(error));
  } finally {
    button.disabled = false;
  }
}

async function secondFactorFailed(error, wrongText) {
  if (error instanceof api.ApiError && (error.code === "no_session" || error.code === "wrong_stage")) {
    showLogin(t("sessionExpired"));
  } else if (error instanceof api.ApiError && error.status === 423) {
    showLogin();
    alertMessage(t("locked"));
  } else {
    alertMessage(error.status === 401 ? wrongText : apiErrorText(error));
  }
}

async function submitTotp(event) {
  event.preventDefault();
  alertMessage("");
  const button = $("totp-submit");
  button.disabled = true;
  try {
    const result = await api.loginTotp($("totp-code").value.trim());
    $("totp-code").value = "";
    await loggedIn(result);
  } catch (error) {
    await secondFactorFailed(error, t("totpFailed"));
  } finally {
    button.disabled = false;
  }
}

async function webauthnLogin() {
  alertMessage("");
  if (!api.webauthnAvailable()) {
    alertMessage(t("webauthnUnavailable"));
    return;
  }
  const button = $("webauthn-login");
  button.disabled = true;
  try {
    await loggedIn(await api.loginWebauthn());
  } catch (error) {
    if (error instanceof api.ApiError) await secondFactorFailed(error, t("webauthnFailed"));
    else alertMessage(t("webauthnFailed"));
  } finally {
    button.disabled = false;
  }
}

async function registerKey() {
  alertMessage("");
  if (!api.webauthnAvailable()) {
    alertMessage(t("webauthnUnavailable"));
    return;
  }
  const button = $("register-key");
  button.disabled = true;
  try {
    const result = await api.registerSecurityKey();
    notice(t("keyRegistered", { count: result.credentials }));
    $("key-count").textContent = t("keyCount", { count: result.credentials });
  } catch (error) {
    if (error instanceof api.ApiError && error.status === 401) sessionEnded();
    else alertMessage(error instanceof api.ApiError ? apiErrorText(error) : t("webauthnFailed"));
  } finally {
    button.disabled = false;
  }
}

/** After the second factor, or on a reload with a live session. */
async function loggedIn() {
  const me = await api.me();
  app.user = { username: me.username, displayName: me.display_name };
  $("account-name").textContent = t("connectedAs", { name: me.display_name || me.username });
  $("key-count").textContent =
    typeof me.webauthn_credentials === "number" ? t("keyCount", { count: me.webauthn_credentials }) : "";
  alertMessage("");
  try {
    app.config = await api.config();
  } catch (error) {
    if (error.status === 401) return sessionEnded();
    app.config = null;
    alertMessage(t("configMissing"));
  }
  try {
    const identity = await ensureIdentity(me.username, me.identity_certified === true);
    $("identity-status").textContent = identity ? t("identityReady") : t("identityMissing");
    if (!identity) alertMessage(t("identityMissing"));
  } catch (error) {
    alertMessage(t("identityFailed", { message: error.message }));
  }
  showView("waiting-room");
  renderQueue();
  openSocket();
}

async function logout() {
  const call = app.call;
  if (call && !call.finished) call.hangUp();
  try {
    await api.logout();
  } catch {
    // the session may be gone already; the local state goes anyway
  }
  await leave(t("loggedOut"));
}

/** The hub ended the session (4401, idle timeout, a 401): back to the login page. */
function sessionEnded() {
  return leave(t("sessionExpired"));
}

async function leave(message) {
  app.user = null;
  const socket = app.socket;
  app.socket = null;
  if (socket) socket.close(1000);
  if (app.call) {
    app.call.finish("logged-out");
    closeCallView();
  }
  app.queue = [];
  renderQueue();
  api.resetCsrf();
  await forgetIdentity();
  showLogin(message);
}

// -- waiting-room socket -------------------------------------------------------------------------
function openSocket() {
  if (app.socket !== null) return;
  const socket = new WebSocket(`wss://${location.host}/api/ws`);
  app.socket = socket;
  socket.onopen = () => {
    app.socketRetry = 0;
    notice(t("socketReady"));
  };
  socket.onmessage = (event) => {
    if (typeof event.data !== "string") return;
    let message;
    try {
      message = parseSignal(event.data, "hub-to-doctor");
    } catch (error) {
      console.warn("refused a message from the hub:", error.message);
      return;
    }
    handleHub(message);
  };
  socket.onclose = (event) => {
    if (app.socket !== socket) return;
    app.socket = null;
    // The hub ends our consultation when this socket closes.
    if (app.call && !app.call.finished) app.call.finish("connection-lost");
    if (event.code === CLOSE_SESSION) {
      sessionEnded();
      return;
    }
    if (app.user !== null) scheduleReconnect();
  };
}

/** Reopen the socket after a drop, backing off; a session that ended meanwhile sends the page to the login. */
function scheduleReconnect() {
  notice(t("socketLost"));
  const delay = Math.min(30_000, 1000 * 2 ** app.socketRetry++);
  setTimeout(async () => {
    if (app.user === null || app.socket !== null) return;
    try {
      await api.me();
      openSocket();
    } catch (error) {
      if (error.status === 401) sessionEnded();
      else scheduleReconnect();
    }
  }, delay);
}

function sendHub(type, body) {
  const text = encodeSignal(type, body);
  if (app.socket !== null && app.socket.readyState === WebSocket.OPEN) app.socket.send(text);
}

function handleHub(message) {
  switch (message.type) {
    case "queue":
      app.queue = message.entries;
      app.queueAt = performance.now();
      renderQueue();
      break;
    case "taken":
      app.queue = app.queue.filter((entry) => entry.entry !== message.entry);
      renderQueue();
      if (!message.by_me && app.accepting === message.entry) {
        app.accepting = null;
        alertMessage(t("takenByOther"));
      }
      break;
    case "session":
      app.accepting = null;
      startCall(message);
      break;
    case "signal":
      if (app.call && app.call.session === message.session) app.call.handleSignal(message.payload);
      break;
    case "ended":
      if (app.call && app.call.session === message.session) app.call.finish(message.reason);
      break;
    case "error":
      app.accepting = null;
      renderQueue();
      alertMessage(
        message.code === "busy" ? t("busy") : message.code === "no_identity" ? t("noIdentity") : message.message,
      );
      break;
    default:
      break;
  }
}

function formatWaiting(seconds) {
  const minutes = Math.floor(seconds / 60);
  const rest = String(seconds % 60).padStart(2, "0");
  return minutes >= 60 ? `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")}` : `${minutes} min ${rest} s`;
}

function renderQueue() {
  const list = $("queue");
  const existing = new Map([...list.children].map((item) => [item.dataset.entry, item]));
  const elapsed = Math.max(0, Math.floor((performance.now() - app.queueAt) / 1000));
  for (const [id, item] of existing) if (!app.queue.some((entry) => entry.entry === id)) item.remove();
  for (const entry of app.queue) {
    let item = existing.get(entry.entry);
    if (item === undefined) {
      item = element("li", { testid: "queue-entry", attrs: { "data-entry": entry.entry } });
      item.append(
        element("span", { className: "name", text: entry.first_name, testid: "entry-name" }),
        element("span", { className: "age", text: t("age", { age: entry.age }), testid: "entry-age" }),
        element("span", { className: "reason", text: entry.reason, testid: "entry-reason" }),
        element("span", { className: "waiting", testid: "entry-waiting" }),
      );
      const accept = element("button", { text: t("accept"), testid: "accept", attrs: { type: "button" } });
      accept.setAttribute("aria-label", t("acceptPatient", { name: entry.first_name }));
      accept.addEventListener("click", () => acceptEntry(entry.entry));
      item.append(accept);
    }
    item.dataset.waitingSeconds = String(entry.waiting_seconds);
    item.querySelector(".waiting").textContent = t("waiting", { time: formatWaiting(entry.waiting_seconds + elapsed) });
    item.querySelector("button").disabled = app.accepting !== null || app.call !== null;
    list.append(item); // keeps the hub's order
  }
  $("room-summary").textContent = app.queue.length ? t("roomLive", { count: app.queue.length }) : t("roomEmpty");
}

function acceptEntry(entry) {
  alertMessage("");
  if (currentIdentity() === null) {
    alertMessage(t("noIdentity"));
    return;
  }
  app.accepting = entry;
  sendHub("accept", { entry });
  renderQueue();
}

// -- the call ---------------------------------------------------------------------------------------
function startCall({ session, entry, booth }) {
  const identity = currentIdentity();
  if (identity === null || (app.call && !app.call.finished)) {
    sendHub("end", { session });
    alertMessage(t("noIdentity"));
    return;
  }
  resetCallView();
  const call = new Call({
    session,
    entry,
    booth,
    identity,
    config: app.config,
    signal: (payload) => sendHub("signal", { session, payload }),
    end: () => sendHub("end", { session }),
  });
  app.call = call;
  call.addEventListener("state", ({ detail }) => showCallState(detail.state));
  call.addEventListener("binding", ({ detail }) => showBinding(detail));
  call.addEventListener("sas", ({ detail }) => showSas(detail));
  call.addEventListener("track", ({ detail }) => showTrack(detail));
  call.addEventListener("local", ({ detail }) => {
    $("video-self").srcObject = detail.stream;
  });
  call.addEventListener("warning", ({ detail }) => {
    if (detail.key === "mediaUnavailable") notice(t("mediaUnavailable"));
    else if (detail.key === "callFailed") alertMessage(t("genericError", { message: detail.message }));
  });
  call.addEventListener("finished", ({ detail }) => callFinished(call, detail.reason));
  call.addEventListener("consult", ({ detail }) => handleConsult(detail.event));
  call.addEventListener("consult-error", ({ detail }) => notice(t("protocolError", { reason: detail.error.reason })));
  call.addEventListener("consult-open", () => {
    $("chat-send").disabled = false;
    $("file-input").disabled = false;
  });
  call.addEventListener("consult-close", () => {
    $("chat-send").disabled = true;
    $("file-input").disabled = true;
  });
  notice("");
  showCallState(call.state);
  showView("call");
  renderQueue();
}

function showCallState(state) {
  setStatus("call-status", t(`state_${state}`), state);
  $("view-call").dataset.state = state;
}

function showBinding(detail) {
  const status = $("binding-status");
  if (detail.ok) {
    status.dataset.state = "ok";
    status.dataset.reason = "";
    status.textContent = t("bindingOk", { name: detail.peer.name });
    return;
  }
  status.dataset.state = "refused";
  status.dataset.reason = detail.reason;
  const known = Object.values(BindingReason).includes(detail.reason);
  status.textContent = t("bindingRefused", { reason: known ? t(`reason_${detail.reason}`) : detail.reason });
  $("refusal-actions").hidden = false;
  $("end-call").hidden = true;
  $("back-to-room").focus();
}

function showSas(sas) {
  $("sas-digits").textContent = sas.digits;
  $("sas-words").textContent = sas.words.join(" · ");
  $("sas-words").dataset.words = sas.words.join(" ");
  $("sas-panel").hidden = false;
  $("sas-verified").focus();
}

function showTrack({ mid, kind, track }) {
  const stream = new MediaStream([track]);
  const target = { 0: "video-patient", 1: "video-exam", 2: "audio-voice", 3: "audio-steth" }[mid];
  const fallback = kind === "video" ? "video-patient" : "audio-voice";
  const media = $(target ?? fallback);
  media.srcObject = stream;
  media.play?.().catch(() => {});
}

function sasVerified() {
  if (!app.call || app.call.sas === null) return;
  app.verified = true;
  $("peripherals").disabled = false;
  $("sas-verified").disabled = true;
  $("sas-panel").classList.add("confirmed");
  $("sas-state").textContent = t("sasConfirmed");
  $("sas-verified").dataset.verified = "true";
}

function sasMismatch() {
  if (!app.call) return;
  app.call.hangUp();
  alertMessage(t("sasMismatchEnded"));
}

function callFinished(call, reason) {
  if (app.call !== call) return;
  if (call.state === CallState.REFUSED) {
    // Keep the red refusal on screen until the doctor goes back.
    $("peripherals").disabled = true;
    return;
  }
  closeCallView();
  if (app.user !== null) {
    showView("waiting-room");
    notice(reason === "bye" ? t("endedByBooth") : t("callEnded", { reason }));
  }
}

function backToRoom() {
  closeCallView();
  showView("waiting-room");
}

/** Clear every trace of the consultation from the page (patient data: media, chat, files, stills). */
function closeCallView() {
  app.call = null;
  $("view-call").dataset.state = "idle";
  app.verified = false;
  app.commands.clear();
  app.expectedStills.clear();
  app.received.clear();
  for (const bitmap of app.bitmaps) bitmap.close();
  app.bitmaps = [];
  app.outgoing.clear();
  for (const url of app.objectUrls) URL.revokeObjectURL(url);
  app.objectUrls = [];
  for (const id of ["video-patient", "video-exam", "video-self", "audio-voice", "audio-steth"]) $(id).srcObject = null;
  for (const id of ["chat-log", "gallery", "files", "device-status"]) $(id).replaceChildren();
  resetPrescriptionPanel();
  const dialog = $("still-dialog");
  if (dialog.open) dialog.close();
  $("still-full").width = $("still-full").height = 0;
  renderQueue();
}

function resetCallView() {
  closeCallView();
  alertMessage("");
  const binding = $("binding-status");
  binding.dataset.state = "pending";
  binding.dataset.reason = "";
  binding.textContent = t("bindingPending");
  $("refusal-actions").hidden = true;
  $("end-call").hidden = false;
  $("sas-panel").hidden = true;
  $("sas-panel").classList.remove("confirmed");
  $("sas-digits").textContent = "";
  $("sas-words").textContent = "";
  $("sas-state").textContent = "";
  $("sas-verified").disabled = false;
  delete $("sas-verified").dataset.verified;
  $("peripherals").disabled = true;
  $("chat-send").disabled = true;
  $("file-input").disabled = true;
  $("chat-input").value = "";
  $("file-status").textContent = "";
  $("camera-select").value = "booth";
  app.oximeterOn = false;
  app.stethoscopeOn = false;
  app.bpRunning = false;
  setToggle("oxi-toggle", false, "oxiStart");
  setToggle("steth-toggle", false, "stethStart");
  $("audio-steth").muted = true;
  $("bp-abort").disabled = true;
  $("bp-start").disabled = false;
  for (const id of ["oxi-status", "bp-status", "temp-status", "camera-status", "steth-status"]) setStatus(id, "");
  for (const id of ["vital-spo2", "vital-pulse", "cuff-pressure"]) $(id).textContent = t("unavailable");
  $("cuff-meter").value = 0;
  $("bp-result").textContent = "";
  $("temp-result").textContent = "";
  app.pleth.clear();
}

// -- peripherals ----------------------------------------------------------------------------------------
function setToggle(id, on, key) {
  const button = $(id);
  button.setAttribute("aria-pressed", on ? "true" : "false");
  button.textContent = t(key);
}

/** Send a command with its handlers; false (and the status says why) when the channel is not open. */
function command(statusId, name, camera, handlers) {
  if (!app.call || !app.verified) return false;
  const id = app.call.consult.command(name, camera);
  if (id === null) {
    setStatus(statusId, t("channelClosed"), "error");
    return false;
  }
  setStatus(statusId, t("sent"), "sent");
  app.commands.set(id, { name, statusId, ...handlers });
  return true;
}

function ackHandler(statusId, { onOk = () => {}, onRefused = () => {} } = {}) {
  return (ok, reason) => {
    if (ok) {
      setStatus(statusId, t("accepted"), "accepted");
      onOk();
    } else {
      setStatus(statusId, t("refused", { reason: reason ?? "" }), "error");
      onRefused();
    }
  };
}

function readingsMap(readings) {
  return Object.fromEntries(readings.map((m) => [m.kind, m]));
}

function formatValue(measurement) {
  return measurement?.value === null || measurement?.value === undefined ? t("unavailable") : number.format(measurement.value);
}

function toggleOximeter() {
  const start = !app.oximeterOn;
  $("oxi-toggle").disabled = true;
  const sent = command("oxi-status", start ? "oximeter.start" : "oximeter.stop", null, {
    onAck: ackHandler("oxi-status", {
      onOk: () => {
        app.oximeterOn = start;
        setToggle("oxi-toggle", start, start ? "oxiStop" : "oxiStart");
      },
    }),
    onSettled: () => {
      $("oxi-toggle").disabled = false;
    },
  });
  if (!sent) $("oxi-toggle").disabled = false;
}

function startBp() {
  $("bp-start").disabled = true;
  $("bp-result").textContent = "";
  for (const key of ["systolic", "diastolic", "mean", "pulse"]) delete $("bp-result").dataset[key];
  const sent = command("bp-status", "bp.start", null, {
    onAck: ackHandler("bp-status", {
      onOk: () => {
        app.bpRunning = true;
        setStatus("bp-status", t("running"), "running");
        $("bp-abort").disabled = false;
      },
      onRefused: () => {
        $("bp-start").disabled = false;
      },
    }),
    onProgress: (pressure) => {
      $("cuff-pressure").textContent = number.format(pressure);
      $("cuff-pressure").dataset.value = String(pressure);
      $("cuff-meter").value = pressure;
    },
    onResult: (result) => {
      app.bpRunning = false;
      $("bp-abort").disabled = true;
      $("bp-start").disabled = false;
      if (result.error !== null) {
        setStatus("bp-status", t("failed", { reason: result.error }), "error");
        return;
      }
      const values = readingsMap(result.readings);
      const out = $("bp-result");
      for (const [kind, measurement] of Object.entries(values)) {
        if (measurement.value !== null) out.dataset[kind] = String(measurement.value);
      }
      out.textContent = t("bpResult", {
        systolic: formatValue(values.systolic),
        diastolic: formatValue(values.diastolic),
        mean: formatValue(values.mean),
        pulse: formatValue(values.pulse),
      });
      setStatus("bp-status", t("done"), "done");
    },
    onStopped: () => {
      app.bpRunning = false;
      $("bp-abort").disabled = true;
      $("bp-start").disabled = false;
    },
  });
  if (!sent) $("bp-start").disabled = false;
}

function abortBp() {
  $("bp-abort").disabled = true;
  command("bp-status", "bp.abort", null, {
    onAck: (ok, reason) => {
      if (!ok) {
        setStatus("bp-status", t("refused", { reason: reason ?? "" }), "error");
        $("bp-abort").disabled = !app.bpRunning;
      }
    },
  });
}

function readTemperature() {
  $("temp-read").disabled = true;
  $("temp-result").textContent = "";
  delete $("temp-result").dataset.value;
  const sent = command("temp-status", "thermometer.read", null, {
    onAck: ackHandler("temp-status", { onOk: () => setStatus("temp-status", t("running"), "running") }),
    onResult: (result) => {
      if (result.error !== null) {
        setStatus("temp-status", t("failed", { reason: result.error }), "error");
        return;
      }
      const values = readingsMap(result.readings);
      const celsius = values.celsius ?? result.readings[0];
      $("temp-result").textContent = `${formatValue(celsius)} ${celsius.unit}`;
      if (celsius.value !== null) $("temp-result").dataset.value = String(celsius.value);
      setStatus("temp-status", t("done"), "done");
    },
    onSettled: () => {
      $("temp-read").disabled = false;
    },
  });
  if (!sent) $("temp-read").disabled = false;
}

let selectedCamera = "booth";
function selectCamera() {
  const select = $("camera-select");
  const camera = select.value;
  const previous = selectedCamera;
  select.disabled = true;
  const sent = command("camera-status", "camera.select", camera, {
    onAck: ackHandler("camera-status", {
      onOk: () => {
        selectedCamera = camera;
        setStatus("camera-status", `${t("accepted")} : ${t(`camera_${camera}`)}`, "done");
      },
      onRefused: () => {
        select.value = previous;
      },
    }),
    onSettled: () => {
      select.disabled = false;
    },
  });
  if (!sent) {
    select.value = previous;
    select.disabled = false;
  }
}

function captureStill() {
  $("still-capture").disabled = true;
  const sent = command("camera-status", "camera.still", null, {
    onAck: ackHandler("camera-status", { onOk: () => setStatus("camera-status", t("running"), "running") }),
    onResult: (result) => {
      if (result.error !== null) {
        setStatus("camera-status", t("failed", { reason: result.error }), "error");
        return;
      }
      const { transfer, camera } = result.still;
      const arrived = app.received.get(transfer);
      if (arrived !== undefined) {
        arrived.item.remove();
        addGalleryItem(transfer, camera, arrived);
      } else {
        app.expectedStills.set(transfer, camera);
      }
      setStatus("camera-status", t("done"), "done");
    },
    onSettled: () => {
      $("still-capture").disabled = false;
    },
  });
  if (!sent) $("still-capture").disabled = false;
}

function toggleStethoscope() {
  const start = !app.stethoscopeOn;
  $("steth-toggle").disabled = true;
  const sent = command("steth-status", start ? "stethoscope.start" : "stethoscope.stop", null, {
    onAck: ackHandler("steth-status", {
      onOk: () => {
        app.stethoscopeOn = start;
        setToggle("steth-toggle", start, start ? "stethStop" : "stethStart");
        const audio = $("audio-steth");
        audio.muted = !start;
        if (start) audio.play().catch(() => {});
      },
    }),
    onSettled: () => {
      $("steth-toggle").disabled = false;
    },
  });
  if (!sent) $("steth-toggle").disabled = false;
}

/** The booth's STOP: every running measurement ends, on both ends. */
function stoppedByPatient(ended) {
  for (const { ref } of ended) {
    const handlers = app.commands.get(ref);
    app.commands.delete(ref);
    if (handlers === undefined) continue;
    setStatus(handlers.statusId, t("stoppedByPatient"), "stopped");
    handlers.onStopped?.();
    handlers.onSettled?.();
  }
  if (app.oximeterOn) {
    app.oximeterOn = false;
    setToggle("oxi-toggle", false, "oxiStart");
    setStatus("oxi-status", t("stoppedByPatient"), "stopped");
  }
  if (app.stethoscopeOn) {
    app.stethoscopeOn = false;
    setToggle("steth-toggle", false, "stethStart");
    $("audio-steth").muted = true;
    setStatus("steth-status", t("stoppedByPatient"), "stopped");
  }
  if (app.bpRunning) {
    app.bpRunning = false;
    $("bp-abort").disabled = true;
    $("bp-start").disabled = false;
    setStatus("bp-status", t("stoppedByPatient"), "stopped");
  }
}

function showDeviceStatus(device, state) {
  const list = $("device-status");
  let item = [...list.children].find((li) => li.dataset.device === device);
  if (item === undefined) {
    item = element("li", { testid: "device-state", attrs: { "data-device": device } });
    list.append(item);
  }
  item.dataset.state = state;
  item.textContent = `${device} : ${state}`;
}

// -- data channel events ------------------------------------------------------------------------------------
function handleConsult(event) {
  switch (event.type) {
    case "ack": {
      const handlers = app.commands.get(event.ref);
      if (handlers === undefined) return;
      handlers.onAck?.(event.ok, event.reason);
      if (!event.ok || COMMANDS[handlers.name] === null) {
        app.commands.delete(event.ref);
        handlers.onSettled?.();
      }
      return;
    }
    case "progress":
      app.commands.get(event.ref)?.onProgress?.(event.cuffPressure);
      return;
    case "result": {
      const handlers = app.commands.get(event.ref);
      app.commands.delete(event.ref);
      handlers?.onResult?.(event);
      handlers?.onSettled?.();
      return;
    }
    case "stop":
      stoppedByPatient(event.ended);
      return;
    case "status":
      showDeviceStatus(event.device, event.state);
      return;
    case "reading":
      $("vital-spo2").textContent = event.spo2 === null ? t("unavailable") : String(event.spo2);
      $("vital-pulse").textContent = event.pulse === null ? t("unavailable") : String(event.pulse);
      app.pleth.push(event.pleth);
      return;
    case "chat":
      addChat(t("chatPatient"), event.text, "peer");
      return;
    case "file-offer":
      $("file-status").textContent = t("fileReceiving", { percent: 0 });
      return;
    case "file-progress":
      $("file-status").textContent = t("fileReceiving", {
        percent: event.size ? Math.floor((100 * event.received) / event.size) : 100,
      });
      return;
    case "file-received":
      fileReceived(event);
      return;
    case "file-ack": {
      const name = app.outgoing.get(event.transfer) ?? event.transfer;
      app.outgoing.delete(event.transfer);
      $("file-status").textContent = event.ok
        ? t("fileAcked", { name })
        : t("fileRefused", { name, reason: event.reason ?? "" });
      return;
    }
    default:
      return;
  }
}

function addChat(who, text, className) {
  const item = element("li", { className, testid: "chat-message" });
  item.dataset.from = className === "me" ? "doctor" : "booth";
  item.append(element("span", { className: "who", text: `${who} :` }), document.createTextNode(text));
  $("chat-log").append(item);
  item.scrollIntoView({ block: "nearest" });
}

function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value;
  if (!app.call || text.trim() === "" || codePoints(text) > MAX_CHAT_CHARS) return;
  if (app.call.consult.chat(text)) {
    addChat(t("chatMe"), text, "me");
    input.value = "";
  } else {
    notice(t("channelClosed"));
  }
  input.focus();
}

function fileReceived(event) {
  $("file-status").textContent = "";
  const blob = new Blob([event.data], { type: event.mime });
  const size = event.data.length;
  event.data.fill(0); // the Blob holds its own copy; this buffer is patient data
  const url = URL.createObjectURL(blob);
  app.objectUrls.push(url);
  const entry = { url, blob, name: event.name, mime: event.mime, item: null };
  const camera = app.expectedStills.get(event.transfer);
  if (camera !== undefined) {
    app.expectedStills.delete(event.transfer);
    addGalleryItem(event.transfer, camera, entry);
    return;
  }
  // Offered as a download; image bytes are never rendered from here except as stills (below).
  const item = element("li");
  const link = element("a", {
    text: event.name,
    testid: "file-received",
    attrs: {
      href: url,
      download: event.name,
      "data-transfer": event.transfer,
      "data-size": String(size),
      "data-sha256": event.sha256,
      "data-mime": event.mime,
    },
  });
  item.append(link, document.createTextNode(` (${humanSize(size)})`));
  $("files").append(item);
  entry.item = item;
  app.received.set(event.transfer, entry);
}

/** A still in the gallery. The CSP (img-src falls back to 'self') refuses blob: images, so stills are
 *  decoded with createImageBitmap and drawn on canvases, at full resolution in the dialog. */
async function addGalleryItem(transfer, camera, entry) {
  app.received.delete(transfer);
  let bitmap;
  try {
    bitmap = await createImageBitmap(entry.blob);
  } catch {
    notice(t("failed", { reason: entry.name }));
    return;
  }
  if (!app.call) {
    bitmap.close(); // the call ended while decoding
    return;
  }
  app.bitmaps.push(bitmap);
  const time = new Date().toLocaleTimeString("fr-FR");
  const label = t("galleryItem", { camera: t(`camera_${camera}`), time, width: bitmap.width, height: bitmap.height });
  const item = element("li");
  const button = element("button", {
    testid: "gallery-item",
    attrs: {
      type: "button",
      "aria-label": `${label} — ${t("openFull")}`,
      "data-transfer": transfer,
      "data-camera": camera,
      "data-width": String(bitmap.width),
      "data-height": String(bitmap.height),
      "data-url": entry.url,
    },
  });
  const thumb = element("canvas");
  const scale = Math.min(1, 192 / bitmap.width, 144 / bitmap.height);
  thumb.width = Math.max(1, Math.round(bitmap.width * scale));
  thumb.height = Math.max(1, Math.round(bitmap.height * scale));
  thumb.getContext("2d").drawImage(bitmap, 0, 0, thumb.width, thumb.height);
  button.append(thumb);
  button.addEventListener("click", () => openStill(bitmap, label, entry));
  const download = element("a", { text: t("download"), attrs: { href: entry.url, download: entry.name } });
  item.append(button, download);
  $("gallery").append(item);
}

function openStill(bitmap, label, entry) {
  const canvas = $("still-full");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  $("still-dialog-title").textContent = label;
  const link = $("still-download");
  link.href = entry.url;
  link.download = entry.name;
  $("still-dialog").showModal();
}

async function sendFiles() {
  const input = $("file-input");
  const files = [...input.files];
  input.value = "";
  for (const file of files) {
    if (!app.call) return;
    if (file.size > MAX_FILE_BYTES) {
      $("file-status").textContent = t("fileTooLarge", { name: file.name });
      continue;
    }
    const name = wireName(file.name);
    if (name === null) {
      $("file-status").textContent = t("fileBadName", { name: file.name });
      continue;
    }
    try {
      const data = new Uint8Array(await file.arrayBuffer());
      const sender = await FileSender.create(data, { name, mime: wireMime(file.type) });
      app.outgoing.set(sender.transfer, name);
      await app.call.consult.sendFile(sender, (sent, size) => {
        $("file-status").textContent = t("fileSending", { name, percent: Math.floor((100 * sent) / Math.max(1, size)) });
      });
      if (app.outgoing.has(sender.transfer)) $("file-status").textContent = t("fileSent", { name });
    } catch (error) {
      $("file-status").textContent = t("genericError", { message: error.message });
    }
  }
}

// -- test hooks --------------------------------------------------------------------------------------------------
window.consoleDebug = Object.freeze({
  /** pc.getStats() of the current call as a plain array ([] without a call). */
  getStats: async () => (app.call ? app.call.stats() : []),
  /** The SRTP cipher the transport negotiated, or null. */
  srtpCipher: async () => (app.call ? app.call.srtpCipher() : null),
  /** The current SAS {digits, words}, or null. */
  sas: () => (app.call?.sas ? { digits: app.call.sas.digits, words: [...app.call.sas.words] } : null),
  /** The call state (waiting, verifying, refused, connecting, connected, reconnecting, ended), else the view. */
  state: () => (app.call ? app.call.state : app.view),
  /** The view shown: login, second-factor, waiting-room, call. */
  view: () => app.view,
});

// -- start -----------------------------------------------------------------------------------------------------------
function bindUi() {
  $("login-form").addEventListener("submit", submitPassword);
  $("totp-form").addEventListener("submit", submitTotp);
  $("webauthn-login").addEventListener("click", webauthnLogin);
  $("restart-login").addEventListener("click", () => showLogin());
  $("register-key").addEventListener("click", registerKey);
  $("logout").addEventListener("click", logout);
  $("end-call").addEventListener("click", () => app.call?.hangUp());
  $("back-to-room").addEventListener("click", backToRoom);
  $("sas-verified").addEventListener("click", sasVerified);
  $("sas-mismatch").addEventListener("click", sasMismatch);
  $("oxi-toggle").addEventListener("click", toggleOximeter);
  $("bp-start").addEventListener("click", startBp);
  $("bp-abort").addEventListener("click", abortBp);
  $("temp-read").addEventListener("click", readTemperature);
  $("camera-select").addEventListener("change", selectCamera);
  $("still-capture").addEventListener("click", captureStill);
  $("steth-toggle").addEventListener("click", toggleStethoscope);
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) sendChat(event);
  });
  $("file-input").addEventListener("change", sendFiles);
  bindPrescriptionPanel(() => app.call);
  window.addEventListener("pagehide", () => app.call?.hangUp());
  setInterval(() => {
    if (app.view === "waiting-room" && app.queue.length) renderQueue();
  }, 1000);
}

async function start() {
  translatePage();
  app.pleth = new PlethChart($("pleth-canvas"));
  bindUi();
  resetCallView();
  try {
    await loggedIn();
  } catch (error) {
    showLogin(error instanceof api.ApiError && error.status !== 401 ? apiErrorText(error) : undefined);
  }
}

start();
