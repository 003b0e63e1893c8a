// The prescription panel of the call view.
//
// The doctor writes the prescription; the hub lays it out, numbers it, signs it
// with the doctor's signing certificate (PAdES) and hands back the signed PDF
// and a fetch code (POST /api/prescriptions). The console then sends that PDF
// to the booth over the end-to-end data channel, marked as a prescription by
// its MIME type; the booth verifies the signature before printing and shows the
// patient the fetch code. The console never alters the signed bytes.

import { createPrescription } from "./api.js";
import { FileSender } from "./datachannel.js";
import { t } from "./strings.js";
import { fromBase64 } from "./util.js";

export const PRESCRIPTION_MIME = "application/vnd.kiosk.prescription+pdf";
const MAX_TEXT = 4000;

const $ = (id) => document.getElementById(id);

/** The patient line as the waiting room showed it (first name, age), for the doctor to complete. */
function patientLine(call) {
  const entry = call?.entry;
  if (!entry) return "";
  return typeof entry.age === "number" ? `${entry.first_name}, ${t("age", { age: entry.age })}` : entry.first_name;
}

/**
 * Bind the panel. `currentCall()` gives the call in progress (or null); the
 * panel is usable once the call's data channel is open.
 */
export function bindPrescriptionPanel(currentCall) {
  const form = $("rx-form");
  const status = $("rx-status");
  $("rx-text").maxLength = MAX_TEXT;
  form.addEventListener("focusin", () => {
    if (!$("rx-patient").value) $("rx-patient").value = patientLine(currentCall());
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const call = currentCall();
    if (!call || !call.consult?.isOpen) {
      status.textContent = t("rxNoCall");
      return;
    }
    const text = $("rx-text").value.trim();
    if (!text) {
      status.textContent = t("rxEmpty");
      return;
    }
    $("rx-sign").disabled = true;
    status.textContent = t("rxSigning");
    try {
      const issued = await createPrescription($("rx-patient").value, text);
      const data = fromBase64(issued.pdf);
      const sender = await FileSender.create(data, { name: `${issued.number}.pdf`, mime: PRESCRIPTION_MIME });
      if (sender.sha256 !== issued.sha256) throw new Error(t("rxDigest"));
      await call.consult.sendFile(sender);
      status.textContent = t("rxSent", { number: issued.number, code: issued.fetch_code });
      status.dataset.number = issued.number;
      $("rx-text").value = "";
    } catch (error) {
      status.textContent = t("genericError", { message: error.message });
    } finally {
      $("rx-sign").disabled = false;
    }
  });
}

/** Forget the panel's content (end of call: patient data). */
export function resetPrescriptionPanel() {
  for (const id of ["rx-patient", "rx-text"]) $(id).value = "";
  $("rx-status").textContent = "";
  delete $("rx-status").dataset.number;
}
