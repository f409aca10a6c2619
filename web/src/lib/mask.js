// Masks of the segmentation service as COCO uncompressed RLE (column-major runs, 0s first,
// `size` = [h, w]): decoded and painted as a tinted overlay at the size it is shown, with no
// PNG to encode on the server or to decode here.

/**
 * @param {{size: number[], counts: number[]}} rle
 * @returns {Uint8Array} h*w values in column-major order, 1 = object
 */
export function decodeRle(rle) {
  const [h, w] = rle.size
  const bits = new Uint8Array(h * w)
  let at = 0
  let value = 0
  for (const count of rle.counts) {
    if (value) bits.fill(1, at, at + count)
    at += count
    value ^= 1
  }
  if (at !== h * w) throw new Error(`the mask's runs cover ${at} pixels, not ${h}x${w}`)
  return bits
}

/**
 * The mask scaled to width x height (nearest image pixel) as RGBA: `color` at `alpha` on
 * the object, transparent elsewhere.
 * @returns {Uint8ClampedArray} (height, width, 4)
 */
export function maskOverlay(rle, width, height, color, alpha = 120) {
  const [h, w] = rle.size
  const bits = decodeRle(rle)
  const out = new Uint8ClampedArray(width * height * 4)
  // Column-major: pixel (x, y) of the image is bits[x * h + y].
  const columns = new Int32Array(width)
  for (let x = 0; x < width; x += 1) {
    columns[x] = Math.min(w - 1, Math.floor(((x + 0.5) * w) / width)) * h
  }
  for (let y = 0; y < height; y += 1) {
    const row = Math.min(h - 1, Math.floor(((y + 0.5) * h) / height))
    let i = y * width * 4
    for (let x = 0; x < width; x += 1, i += 4) {
      if (bits[columns[x] + row]) {
        out[i] = color[0]
        out[i + 1] = color[1]
        out[i + 2] = color[2]
        out[i + 3] = alpha
      }
    }
  }
  return out
}
