// Small canvas line charts over a sliding time window (no library).

export class LineChart {
  // series: [{ name, color, dashed? }]; yMax: fixed top (e.g. 1 for a rate) or null to fit.
  constructor(canvas, series, { windowS = 120, yMax = null, format = (v) => String(Math.round(v)) } = {}) {
    this.canvas = canvas;
    this.series = series;
    this.windowS = windowS;
    this.yMax = yMax;
    this.format = format;
    this.points = []; // [t, [v per series | null]]
  }

  push(t, values) {
    this.points.push([t, values]);
    while (this.points.length && this.points[0][0] < t - this.windowS) this.points.shift();
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const ratio = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    if (this.canvas.width !== w * ratio) { this.canvas.width = w * ratio; this.canvas.height = h * ratio; }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const left = 44, right = 8, top = 8, bottom = 18;
    const now = this.points.length ? this.points[this.points.length - 1][0] : 0;
    const t0 = now - this.windowS;
    let yMax = this.yMax;
    if (yMax === null) {
      yMax = 1;
      for (const [, vs] of this.points) for (const v of vs) if (v !== null && v > yMax) yMax = v;
      yMax = niceCeil(yMax);
    }
    const x = (t) => left + ((t - t0) / this.windowS) * (w - left - right);
    const y = (v) => top + (1 - v / yMax) * (h - top - bottom);
    ctx.strokeStyle = "#e3e6eb"; ctx.fillStyle = "#6b7280"; ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = (yMax * i) / 4;
      ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
      ctx.fillText(this.format(v), 2, y(v) + 4);
    }
    ctx.fillText(`last ${this.windowS} s`, w - right - 60, h - 4);
    this.series.forEach((s, i) => {
      ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.setLineDash(s.dashed ? [4, 3] : []);
      ctx.beginPath();
      let pen = false;
      for (const [t, vs] of this.points) {
        const v = vs[i];
        if (v === null || v === undefined) { pen = false; continue; }
        if (pen) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
        pen = true;
      }
      ctx.stroke();
    });
    ctx.setLineDash([]);
  }
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
