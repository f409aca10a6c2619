// Heatmap colouring: plain pixel maths on RGBA arrays, testable without a canvas.

// A few stops of a perceptual "magma"-like ramp: dark violet -> red -> yellow.
const STOPS = [
  [0.0, [20, 11, 52]],
  [0.35, [120, 28, 109]],
  [0.65, [229, 92, 48]],
  [1.0, [252, 255, 164]],
]

export function rampColor(v) {
  const x = Math.min(1, Math.max(0, Number.isFinite(v) ? v : 0))
  for (let i = 1; i < STOPS.length; i += 1) {
    const [x1, c1] = STOPS[i]
    if (x <= x1) {
      const [x0, c0] = STOPS[i - 1]
      const f = (x - x0) / (x1 - x0)
      return c0.map((c, j) => Math.round(c + (c1[j] - c) * f))
    }
  }
  return STOPS[STOPS.length - 1][1]
}

/**
 * Heatmap pixels.
 * @param {number[]} values gh*gw similarities in 0..1, row-major
 * @param {number} gh grid rows
 * @param {number} gw grid columns
 * @returns {Uint8ClampedArray} (gh, gw, 4) RGBA; low values more transparent
 */
export function heatmapPixels(values, gh, gw) {
  const out = new Uint8ClampedArray(gh * gw * 4)
  for (let i = 0; i < gh * gw; i += 1) {
    const v = Math.min(1, Math.max(0, Number(values[i]) || 0))
    const [r, g, b] = rampColor(v)
    out[i * 4] = r
    out[i * 4 + 1] = g
    out[i * 4 + 2] = b
    out[i * 4 + 3] = Math.round(60 + 150 * v)
  }
  return out
}
