// A play's evidence as text, the same on every page: the part of the track that was played and the alteration
// (the kind of edit, from the measured time scale and pitch shift).
import { fmtSeconds } from "./api.js";

// "12.0–47.5": seconds of the track; "" for engines that give no offsets.
export function partOfTrack(p) {
  if (p.track_start_s === null || p.track_start_s === undefined) return "";
  return `${fmtSeconds(p.track_start_s)}–${fmtSeconds(p.track_end_s)}`;
}

// "speed (×1.060, +1.00 st)": the kind of edit, then the measurements it comes from; "" when nothing is known.
export function alterationText(p) {
  const measured = [];
  if (p.time_scale !== null && p.time_scale !== undefined) measured.push(`×${Number(p.time_scale).toFixed(3)}`);
  if (p.pitch_semitones !== null && p.pitch_semitones !== undefined) {
    const st = Number(p.pitch_semitones);
    measured.push(`${st >= 0 ? "+" : ""}${st.toFixed(2)} st`);
  }
  const kind = p.alteration && p.alteration !== "unknown" ? p.alteration : "";
  if (!measured.length) return kind;
  return kind ? `${kind} (${measured.join(", ")})` : measured.join(", ");
}
