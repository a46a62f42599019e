// Drawing on the page's canvas: the speech probability per frame with the detected segments (VAD), or every
// output unit per step (any other model). Plain 2D canvas, redrawn whole on each animation frame that has news.

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
  "#17becf"];
const PAD = { left: 48, right: 12, top: 12, bottom: 28 };

function frame(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  return { g, w: width - PAD.left - PAD.right, h: height - PAD.top - PAD.bottom };
}

function axes(g, w, h, x0, x1, y0, y1, xLabel) {
  g.strokeStyle = "#999";
  g.fillStyle = "#444";
  g.font = "11px sans-serif";
  g.lineWidth = 1;
  g.strokeRect(PAD.left, PAD.top, w, h);
  g.textAlign = "right";
  for (let k = 0; k <= 4; k++) {
    const v = y0 + (y1 - y0) * k / 4;
    const y = PAD.top + h - h * k / 4;
    g.fillText(v.toFixed(Math.abs(y1 - y0) <= 5 ? 2 : 1), PAD.left - 4, y + 4);
  }
  g.textAlign = "center";
  const step = niceStep((x1 - x0) / 8);
  for (let v = Math.ceil(x0 / step) * step; v <= x1; v += step) {
    g.fillText(String(Math.round(v * 100) / 100), PAD.left + w * (v - x0) / (x1 - x0 || 1), PAD.top + h + 14);
  }
  g.fillText(xLabel, PAD.left + w / 2, PAD.top + h + 26);
}

function niceStep(raw) {
  const base = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 5, 10].map((m) => m * base).find((s) => s >= raw) || base;
}

// probs: per-frame probabilities; segments: [[start_s, end_s]]; windowS: seconds shown (0: everything).
export function drawVad(canvas, probs, segments, frameS, windowS = 0) {
  const { g, w, h } = frame(canvas);
  const total = probs.length * frameS;
  const x1 = Math.max(total, windowS || 1);
  const x0 = windowS ? Math.max(0, x1 - windowS) : 0;
  const x = (t) => PAD.left + w * (t - x0) / (x1 - x0);
  const y = (p) => PAD.top + h - h * p;
  g.fillStyle = "rgba(44, 160, 44, 0.18)";
  for (const [a, b] of segments) {
    if (b < x0) continue;
    g.fillRect(x(Math.max(a, x0)), PAD.top, x(b) - x(Math.max(a, x0)), h);
  }
  axes(g, w, h, x0, x1, 0, 1, "seconds");
  g.setLineDash([4, 4]);
  g.strokeStyle = "#d62728";
  g.beginPath();
  g.moveTo(PAD.left, y(0.5));
  g.lineTo(PAD.left + w, y(0.5));
  g.stroke();
  g.setLineDash([]);
  g.strokeStyle = COLORS[0];
  g.lineWidth = 1.5;
  g.beginPath();
  const first = Math.max(0, Math.floor(x0 / frameS));
  for (let i = first; i < probs.length; i++) {
    const t = (i + 0.5) * frameS;
    if (i === first) g.moveTo(x(t), y(probs[i]));
    else g.lineTo(x(t), y(probs[i]));
  }
  g.stroke();
}

// rows: per step, an array of the output's units; labels: one per unit (or empty).
export function drawSteps(canvas, rows, labels) {
  const { g, w, h } = frame(canvas);
  const units = rows.length ? rows[0].length : 0;
  let lo = Infinity;
  let hi = -Infinity;
  for (const row of rows) for (const v of row) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!(hi > lo)) { lo = (lo === Infinity ? 0 : lo) - 1; hi = lo + 2; }
  const steps = Math.max(rows.length - 1, 1);
  const x = (i) => PAD.left + w * i / steps;
  const y = (v) => PAD.top + h - h * (v - lo) / (hi - lo);
  axes(g, w, h, 0, steps, lo, hi, "step");
  for (let u = 0; u < units; u++) {
    g.strokeStyle = COLORS[u % COLORS.length];
    g.lineWidth = 1.5;
    g.beginPath();
    rows.forEach((row, i) => (i === 0 ? g.moveTo(x(i), y(row[u])) : g.lineTo(x(i), y(row[u]))));
    g.stroke();
  }
  g.textAlign = "left";
  g.font = "11px sans-serif";
  for (let u = 0; u < Math.min(units, 12); u++) {
    g.fillStyle = COLORS[u % COLORS.length];
    g.fillText(labels[u] || `unit ${u}`, PAD.left + 6 + 90 * (u % 6), PAD.top + 14 + 14 * Math.floor(u / 6));
  }
}
