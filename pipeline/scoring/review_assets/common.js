"use strict";
// Shared by review.html (detect) and report.html (evaluate). No network, no libraries.

/** Page data: the inline JSON of <script id="data">. */
function pageData() {
  return JSON.parse(document.getElementById("data").textContent);
}

/** {n, step, v, q?} -> Float64Array(n): value c on frames c*step .. c*step+step-1, the last value
 *  repeated past the end (pipeline.timeline.frame_scores / review.decode_scores). */
function expandScores(enc) {
  const n = enc.n, step = enc.step, q = enc.q || 1, v = enc.v;
  const out = new Float64Array(n);
  for (let f = 0; f < n; f++) {
    const c = Math.min(Math.floor(f / step), v.length - 1);
    out[f] = c >= 0 ? v[c] / q : 0;
  }
  return out;
}

function round(x, d) { const m = Math.pow(10, d); return Math.round(x * m) / m; }

/** Anomalous intervals of per-frame scores: the rule of pipeline.timeline.find_intervals, line by
 *  line: runs of frames >= threshold, runs separated by fewer than mergeGap*fps frames joined,
 *  runs shorter than minDuration*fps frames dropped. Frames 0-based, inclusive ends. With `times`
 *  (each frame's own time, variable frame rate) gaps and durations are measured on them. */
function findIntervals(scores, fps, threshold, minDuration, mergeGap, times) {
  // frame positions -> seconds: at `fps`, or on the frames' own times (each lasts until the next)
  const ends = times ? frameEnds(times, fps) : null;
  const startS = times ? s => times[s] : s => s / fps;
  const endS = times ? e => ends[e] : e => (e + 1) / fps;
  const lengthS = times ? (s, e) => ends[e] - times[s] : (s, e) => (e - s + 1) / fps;
  const joined = times ? (prevEnd, s) => times[s] - ends[prevEnd] < mergeGap - 1e-9
                       : (prevEnd, s) => (s - prevEnd - 1) < mergeGap * fps;
  const tooShort = times ? (s, e) => lengthS(s, e) < minDuration - 1e-9
                         : (s, e) => (e - s + 1) < minDuration * fps - 1e-9;
  const runs = [];
  let start = -1;
  for (let i = 0; i < scores.length; i++) {
    const above = scores[i] >= threshold;
    if (above && start < 0) start = i;
    if (!above && start >= 0) { runs.push([start, i - 1]); start = -1; }
  }
  if (start >= 0) runs.push([start, scores.length - 1]);
  const merged = [];
  for (const [s, e] of runs) {
    if (merged.length && joined(merged[merged.length - 1][1], s)) merged[merged.length - 1][1] = e;
    else merged.push([s, e]);
  }
  const out = [];
  for (const [s, e] of merged) {
    if (tooShort(s, e)) continue;
    let peak = s, sum = 0;
    for (let i = s; i <= e; i++) { sum += scores[i]; if (scores[i] > scores[peak]) peak = i; }
    out.push({start_frame: s, end_frame: e, start_s: round(startS(s), 4), end_s: round(endS(e), 4),
              duration_s: round(lengthS(s, e), 4), peak_score: round(scores[peak], 6), peak_frame: peak,
              mean_score: round(sum / (e - s + 1), 6)});
  }
  return out;
}

/** End of each frame: the next frame's start; the last lasts as long as the step before it. */
function frameEnds(times, fps) {
  const n = times.length, ends = new Float64Array(n);
  for (let i = 0; i + 1 < n; i++) ends[i] = times[i + 1];
  if (n) ends[n - 1] = times[n - 1] + (n > 1 && times[n - 1] > times[n - 2] ? times[n - 1] - times[n - 2] : 1 / fps);
  return ends;
}

/** A video's clock: time of a (fractional) frame position and the frame at a time, on its own
 *  frame times (`v.times`, variable frame rate) or at `v.fps`. */
function videoClock(v) {
  if (!v.times) return {timeOf: f => f / v.fps, frameAt: t => t * v.fps};
  const T = v.times, ends = frameEnds(T, v.fps), n = T.length;
  const timeOf = f => {
    if (f <= 0) return T[0] || 0;
    if (f >= n) return ends[n - 1];
    const i = Math.floor(f);
    return T[i] + (f - i) * (ends[i] - T[i]);
  };
  const frameAt = t => {
    if (t <= T[0]) return 0;
    if (t >= ends[n - 1]) return n;
    let lo = 0, hi = n - 1;                                  // last frame starting at or before t
    while (lo < hi) { const m = (lo + hi + 1) >> 1; if (T[m] <= t) lo = m; else hi = m - 1; }
    return lo + (t - T[lo]) / Math.max(1e-9, ends[lo] - T[lo]);
  };
  return {timeOf, frameAt};
}

/** Per-pixel [min, max] of scores[f0 .. f1) over `width` columns (drawing a long curve). */
function envelope(scores, f0, f1, width) {
  const lo = new Float64Array(width), hi = new Float64Array(width);
  const span = Math.max(1, f1 - f0);
  for (let x = 0; x < width; x++) {
    const a = f0 + Math.floor(x * span / width);
    const b = Math.max(a + 1, f0 + Math.floor((x + 1) * span / width));
    let mn = Infinity, mx = -Infinity;
    for (let f = a; f < Math.min(b, f1); f++) { const s = scores[f]; if (s < mn) mn = s; if (s > mx) mx = s; }
    if (mn === Infinity) { mn = mx = (lo[x - 1] || 0); }
    lo[x] = mn; hi[x] = mx;
  }
  return [lo, hi];
}

/** Size a canvas to its CSS box times the device pixel ratio; returns [ctx, cssWidth, cssHeight]. */
function fitCanvas(canvas) {
  const r = window.devicePixelRatio || 1;
  const w = Math.max(10, Math.round(canvas.clientWidth)), h = Math.max(10, Math.round(canvas.clientHeight));
  if (canvas.width !== Math.round(w * r) || canvas.height !== Math.round(h * r)) {
    canvas.width = Math.round(w * r); canvas.height = Math.round(h * r);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(r, 0, 0, r, 0, 0);
  return [ctx, w, h];
}

const COLOURS = {curve: "#1f4e9c", gt: "rgba(214,39,40,0.22)", detected: "#ff7f0e", threshold: "#777",
                 playhead: "#111", missed: "#d62728", falseAlarm: "#9467bd"};

/** Draw a score curve on a canvas.
 *  opts: scores (Float64Array), f0, f1 (frame range), gt / intervals ([[s, e]] inclusive),
 *  threshold, pad {l, r, t, b}, axis (bool), fps (axis labels in seconds when > 0). */
function drawCurve(canvas, opts) {
  const [ctx, w, h] = fitCanvas(canvas);
  const pad = opts.pad || {l: 0, r: 0, t: 2, b: 2};
  const pw = Math.max(1, w - pad.l - pad.r), ph = Math.max(1, h - pad.t - pad.b);
  const f0 = opts.f0 || 0, f1 = opts.f1 || opts.scores.length;
  const X = f => pad.l + (f - f0) / Math.max(1, f1 - f0) * pw;
  const Y = s => pad.t + (1 - Math.max(0, Math.min(1, s))) * ph;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#fff"; ctx.fillRect(pad.l, pad.t, pw, ph);
  const span = (s, e, colour, y0, y1) => {
    if (e < f0 || s >= f1) return;
    const a = X(Math.max(s, f0)), b = X(Math.min(e + 1, f1));
    ctx.fillStyle = colour; ctx.fillRect(a, y0, Math.max(1, b - a), y1 - y0);
  };
  for (const [s, e] of (opts.gt || [])) span(s, e, COLOURS.gt, pad.t, pad.t + ph);
  for (const [s, e] of (opts.intervals || [])) {
    span(s, e, "rgba(255,127,14,0.13)", pad.t, pad.t + ph);
    span(s, e, COLOURS.detected, pad.t, pad.t + Math.max(3, ph * 0.06));
  }
  if (opts.threshold != null) {
    ctx.strokeStyle = COLOURS.threshold; ctx.setLineDash([4, 3]); ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(pad.l, Y(opts.threshold)); ctx.lineTo(pad.l + pw, Y(opts.threshold)); ctx.stroke();
    ctx.setLineDash([]);
  }
  const cols = Math.max(1, Math.round(pw));
  const [lo, hi] = envelope(opts.scores, f0, f1, cols);
  ctx.strokeStyle = COLOURS.curve; ctx.fillStyle = COLOURS.curve; ctx.lineWidth = opts.lineWidth || 1.5;
  ctx.beginPath();
  for (let x = 0; x < cols; x++) {
    const px = pad.l + (x + 0.5) * pw / cols;
    if (x === 0) ctx.moveTo(px, Y(hi[x])); else ctx.lineTo(px, Y(hi[x]));
    if (lo[x] !== hi[x]) ctx.lineTo(px, Y(lo[x]));
  }
  ctx.stroke();
  if (opts.axis) drawAxes(ctx, pad, pw, ph, f0, f1, opts.fps, opts.clock);
  return {X, Y, pad, pw, ph, f0, f1, w, h};
}

/** Time (or frame) ticks along the bottom and score ticks on the left. */
function drawAxes(ctx, pad, pw, ph, f0, f1, fps, clock) {
  ctx.fillStyle = "#444"; ctx.strokeStyle = "#bbb"; ctx.lineWidth = 1; ctx.font = "11px sans-serif";
  ctx.strokeRect(pad.l + 0.5, pad.t + 0.5, pw - 1, ph - 1);
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (const s of [0, 0.5, 1]) ctx.fillText(s.toFixed(1), pad.l - 4, pad.t + (1 - s) * ph);
  const unit = fps > 0 ? fps : 1;
  const t0 = clock ? clock.timeOf(f0) : f0 / unit, t1 = clock ? clock.timeOf(f1) : f1 / unit;
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
  const most = Math.max(2, pw / 80);                      // ticks at least 80 px apart
  let step = steps.find(s => (t1 - t0) / s <= most) || 14400;
  if (!(fps > 0)) {                                       // frames: 1, 2 or 5 times a power of ten
    const raw = (t1 - t0) / most, p10 = Math.pow(10, Math.floor(Math.log10(Math.max(1, raw))));
    step = [1, 2, 5, 10].map(m => m * p10).find(s => s >= raw) || 10 * p10;
  }
  ctx.textBaseline = "top";
  const right = ctx.canvas.clientWidth || (pad.l + pw + pad.r);
  for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
    const x = clock ? pad.l + (clock.frameAt(t) - f0) / Math.max(1, f1 - f0) * pw   // frames are linear
                    : pad.l + (t - t0) / Math.max(1e-9, t1 - t0) * pw;
    ctx.beginPath(); ctx.moveTo(x, pad.t + ph); ctx.lineTo(x, pad.t + ph + 3); ctx.stroke();
    const text = fps > 0 ? fmtTime(t) : String(Math.round(t)), half = ctx.measureText(text).width / 2;
    // a label that would stick out of the canvas (the last one, at the right edge) is kept inside it
    ctx.textAlign = x + half > right ? "right" : x - half < 0 ? "left" : "center";
    ctx.fillText(text, ctx.textAlign === "right" ? right - 1 : ctx.textAlign === "left" ? 1 : x, pad.t + ph + 5);
  }
}

/** Seconds -> "m:ss" or "h:mm:ss" (tenths below a minute when `tenths`). */
function fmtTime(t, tenths) {
  t = Math.max(0, t);
  const h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, s = t % 60;
  const ss = tenths ? s.toFixed(1).padStart(4, "0") : String(Math.floor(s)).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function pct(x) { return x == null ? "n/a" : (100 * x).toFixed(2) + "%"; }
