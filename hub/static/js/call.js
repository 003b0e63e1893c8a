// One consultation's WebRTC side (contract: "Call setup", steps 2-8).
//
// The booth offers, the console answers. Before anything is answered the
// booth's identity binding is verified (binding.verifyBoothOffer); on any
// failure the console shows a refusal, sends bye and end, and never creates
// an answer. Otherwise it answers from an RTCPeerConnection whose
// certificate was generated once for the call (ECDSA P-256), with its camera
// and microphone on the first video and first audio transceivers, sends
// identity{fingerprint, signature, chain} then answer{sdp}, and trickles its
// remaining ICE candidates. Both fingerprints give the SAS.
//
// ICE restart: the booth sends a new offer on the same session without a new
// identity. The console checks that the offer still carries the verified
// fingerprint, then answers from a NEW RTCPeerConnection with the SAME
// RTCCertificate (so its own fingerprint, the signed binding and the SAS stay
// valid), re-attaching the same local media; the booth's new "consult"
// channel lands behind the same ConsultChannel (protocol state kept).
//
// Booth m-lines: mid 0 booth camera (sendrecv), mid 1 examination camera,
// mid 2 voice (sendrecv), mid 3 stethoscope, then the data channel.
//
// Events (CustomEvent.detail): state {state}, binding {ok, peer | reason, message},
// sas {digits, words}, track {mid, kind, track}, local {stream}, warning {key}, finished {reason},
// consult {event}, consult-error {error}, consult-open, consult-close.

import {
  BindingError,
  Reason,
  fingerprintOfSdp,
  normaliseFingerprint,
  signFingerprint,
  verifyBoothOffer,
} from "./binding.js";
import { ConsultChannel } from "./datachannel.js";
import { shortAuthenticationString } from "./sas.js";

export const CallState = Object.freeze({
  WAITING: "waiting",
  VERIFYING: "verifying",
  REFUSED: "refused",
  CONNECTING: "connecting",
  CONNECTED: "connected",
  RECONNECTING: "reconnecting",
  ENDED: "ended",
});

const GATHERING_WAIT_MS = 1500;
const MEDIA_CONSTRAINTS = {
  video: { width: { ideal: 1280 }, height: { ideal: 720 } },
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
};

/** "sha-256 AB:..." of an RTCCertificate. */
export function certificateFingerprint(certificate) {
  const found = certificate.getFingerprints().find((f) => f.algorithm.toLowerCase() === "sha-256");
  if (found === undefined) throw new Error("the certificate has no SHA-256 fingerprint");
  return normaliseFingerprint(`sha-256 ${found.value}`);
}

/** RTCConfiguration pieces from /api/config (ignoring anything malformed). */
export function rtcConfiguration(config) {
  const servers = Array.isArray(config?.ice_servers) ? config.ice_servers : [];
  const iceServers = servers
    .filter((s) => s && (typeof s.urls === "string" || Array.isArray(s.urls)))
    .map((s) => {
      const server = { urls: s.urls };
      if (typeof s.username === "string") server.username = s.username;
      if (typeof s.credential === "string") server.credential = s.credential;
      return server;
    });
  const iceTransportPolicy = config?.ice_transport_policy === "relay" ? "relay" : "all";
  return { iceServers, iceTransportPolicy, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" };
}

export class Call extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.session, options.entry, options.booth  from the hub's `session` message
   * @param {{privateKey: CryptoKey, chain: string}} options.identity  this login's certified key
   * @param {object|null} options.config  /api/config (fleet_ca, ice_servers, ice_transport_policy)
   * @param {(payload: object) => void} options.signal  send a signal payload for this session
   * @param {() => void} options.end  tell the hub the consultation is over
   * @param {() => Promise<MediaStream>} [options.getMedia]
   */
  constructor({ session, entry, booth, identity, config, signal, end, getMedia }) {
    super();
    this.session = session;
    this.entry = entry;
    this.booth = booth;
    this.identity = identity;
    this.config = config;
    this.sendSignal = signal;
    this.sendEnd = end;
    this.getMedia = getMedia ?? (() => navigator.mediaDevices.getUserMedia(MEDIA_CONSTRAINTS));
    this.state = CallState.WAITING;
    this.boothIdentity = null;
    this.boothPeer = null;
    this.doctorFingerprint = null;
    this.certificate = null;
    this.pc = null;
    this.localStream = null;
    this.sas = null;
    this.remoteCandidates = [];
    this.queue = Promise.resolve();
    this.finished = false;
    this.consult = new ConsultChannel({
      onEvent: (event) => this.emit("consult", { event }),
      onError: (error) => this.emit("consult-error", { error }),
      onOpen: () => this.emit("consult-open"),
      onClose: () => this.emit("consult-close"),
    });
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", { state });
  }

  /** A signal payload from the booth (through the hub); handled strictly in arrival order. */
  handleSignal(payload) {
    this.queue = this.queue
      .then(() => this.process(payload))
      .catch((error) => {
        if (error instanceof BindingError) return this.refuse(error.reason, error.message);
        // Not an identity problem (a description the browser cannot apply...): end the call plainly.
        console.error("signal handling failed", error);
        this.emit("warning", { key: "callFailed", message: String(error?.message ?? error) });
        return this.hangUp();
      });
    return this.queue;
  }

  async process(payload) {
    if (this.finished) return;
    switch (payload.kind) {
      case "identity":
        if (this.boothIdentity === null) {
          this.boothIdentity = payload;
        } else if (
          normaliseFingerprint(payload.fingerprint) !== normaliseFingerprint(this.boothIdentity.fingerprint) ||
          payload.certificate !== this.boothIdentity.certificate
        ) {
          throw new BindingError(Reason.FINGERPRINT_MISMATCH, "the booth changed its identity during the call");
        }
        return;
      case "offer":
        return this.boothPeer === null ? this.firstOffer(payload.sdp) : this.restartOffer(payload.sdp);
      case "ice":
        return this.addRemoteCandidate(payload);
      case "bye":
        this.finish("bye", { notifyHub: true });
        return;
      default:
        // An answer (the console is the answerer) or anything else: not for us.
        this.emit("warning", { key: "unexpectedSignal", kind: payload.kind });
    }
  }

  async firstOffer(sdp) {
    this.setState(CallState.VERIFYING);
    // Verification first: nothing is answered, no media is touched before it passes.
    this.boothPeer = await verifyBoothOffer({
      identity: this.boothIdentity,
      offerSdp: sdp,
      session: this.session,
      booth: this.booth,
      fleetCa: this.config?.fleet_ca,
    });
    this.emit("binding", { ok: true, peer: this.boothPeer });
    this.certificate = await RTCPeerConnection.generateCertificate({ name: "ECDSA", namedCurve: "P-256" });
    this.doctorFingerprint = certificateFingerprint(this.certificate);
    try {
      this.localStream = await this.getMedia();
      this.emit("local", { stream: this.localStream });
    } catch {
      this.localStream = null;
      this.emit("warning", { key: "mediaUnavailable" });
    }
    if (this.finished) return;
    await this.answer(sdp, { first: true });
  }

  async restartOffer(sdp) {
    const offered = fingerprintOfSdp(sdp);
    if (offered !== this.boothPeer.fingerprint) {
      throw new BindingError(Reason.FINGERPRINT_MISMATCH, "the new offer carries another fingerprint");
    }
    this.setState(CallState.RECONNECTING);
    await this.answer(sdp, { first: false });
  }

  async answer(sdp, { first }) {
    const old = this.pc;
    if (old !== null) {
      old.onicecandidate = old.ontrack = old.ondatachannel = old.onconnectionstatechange = null;
      old.close();
    }
    const pc = new RTCPeerConnection({ ...rtcConfiguration(this.config), certificates: [this.certificate] });
    this.pc = pc;
    const pending = [];
    let answerSent = false;
    pc.onicecandidate = ({ candidate }) => {
      if (candidate === null || !candidate.candidate) return;
      if (answerSent) this.sendCandidate(candidate);
      else pending.push(candidate);
    };
    pc.ontrack = (event) => {
      this.emit("track", { mid: event.transceiver.mid, kind: event.track.kind, track: event.track });
    };
    pc.ondatachannel = ({ channel }) => {
      // The booth opens "consult"; the console never opens channels and refuses any other.
      if (channel.label === "consult") this.consult.attach(channel);
      else channel.close();
    };
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc || this.finished) return;
      if (pc.connectionState === "connected") this.setState(CallState.CONNECTED);
      else if (pc.connectionState === "failed" || pc.connectionState === "disconnected") {
        this.setState(CallState.RECONNECTING); // the booth restarts with a new offer
      }
    };

    await pc.setRemoteDescription({ type: "offer", sdp });
    for (const candidate of this.remoteCandidates.splice(0)) await this.applyCandidate(candidate);
    const transceivers = pc.getTransceivers();
    const firstOf = (kind) => transceivers.find((t) => t.receiver.track.kind === kind);
    for (const [kind, transceiver] of [
      ["video", firstOf("video")],
      ["audio", firstOf("audio")],
    ]) {
      const track = this.localStream?.getTracks().find((t) => t.kind === kind);
      if (transceiver === undefined || track === undefined) continue;
      await transceiver.sender.replaceTrack(track);
      transceiver.sender.setStreams?.(this.localStream);
      transceiver.direction = "sendrecv";
    }
    await pc.setLocalDescription(await pc.createAnswer());
    await waitForGathering(pc, GATHERING_WAIT_MS);
    if (this.pc !== pc || this.finished) return;
    const localSdp = pc.localDescription.sdp;
    const ours = fingerprintOfSdp(localSdp);
    if (ours !== this.doctorFingerprint) throw new Error("the answer does not carry the call's certificate");
    if (first) {
      const signature = await signFingerprint(ours, this.identity.privateKey, "doctor", this.session);
      this.sendSignal({ kind: "identity", fingerprint: ours, signature, certificate: this.identity.chain });
      this.sas = await shortAuthenticationString(this.boothPeer.fingerprint, ours, this.session);
      this.emit("sas", this.sas);
    }
    this.sendSignal({ kind: "answer", sdp: localSdp });
    answerSent = true;
    for (const candidate of pending) {
      if (!localSdp.includes(`a=${candidate.candidate}`)) this.sendCandidate(candidate);
    }
    if (pc.connectionState !== "connected") this.setState(first ? CallState.CONNECTING : CallState.RECONNECTING);
    else this.setState(CallState.CONNECTED);
  }

  sendCandidate(candidate) {
    if (this.finished) return;
    this.sendSignal({
      kind: "ice",
      candidate: candidate.candidate,
      sdpMid: candidate.sdpMid ?? null,
      sdpMLineIndex: candidate.sdpMLineIndex ?? null,
    });
  }

  async addRemoteCandidate(payload) {
    const candidate = { candidate: payload.candidate, sdpMid: payload.sdpMid, sdpMLineIndex: payload.sdpMLineIndex };
    if (this.pc === null || this.pc.remoteDescription === null) this.remoteCandidates.push(candidate);
    else await this.applyCandidate(candidate);
  }

  async applyCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch {
      this.emit("warning", { key: "badCandidate" });
    }
  }

  /** Refuse the call: red message, bye to the booth, end to the hub; never an answer. */
  refuse(reason, message) {
    if (this.finished) return;
    this.emit("binding", { ok: false, reason, message });
    this.sendSignal({ kind: "bye" });
    this.finish(reason, { notifyHub: true, state: CallState.REFUSED });
  }

  /** The doctor hangs up: bye to the booth, end to the hub. */
  hangUp() {
    if (this.finished) return;
    this.sendSignal({ kind: "bye" });
    this.finish("doctor-ended", { notifyHub: true });
  }

  /** The call is over (bye, hub's ended, refusal): release everything. */
  finish(reason, { notifyHub = false, state = CallState.ENDED } = {}) {
    if (this.finished) return;
    this.finished = true;
    this.endReason = reason;
    if (notifyHub) this.sendEnd();
    this.consult.close();
    if (this.pc !== null) {
      this.pc.onicecandidate = this.pc.ontrack = this.pc.ondatachannel = this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    for (const track of this.localStream?.getTracks() ?? []) track.stop();
    this.setState(state);
    this.emit("finished", { reason });
  }

  /** pc.getStats() as a plain array. */
  async stats() {
    if (this.pc === null) return [];
    return Array.from((await this.pc.getStats()).values());
  }

  /** The negotiated SRTP cipher (transport stats), or null. */
  async srtpCipher() {
    const stats = await this.stats();
    const transport = stats.find((s) => s.type === "transport" && s.srtpCipher) ?? stats.find((s) => s.srtpCipher);
    return transport?.srtpCipher ?? null;
  }
}

function waitForGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}
