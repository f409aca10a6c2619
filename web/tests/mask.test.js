import { describe, expect, it } from 'vitest'
import { decodeRle, maskOverlay } from '../src/lib/mask.js'

describe('mask RLE', () => {
  it('decodes column-major runs, zeros first', () => {
    // 2x3 image, columns top to bottom: (1, 1), (0, 1), (0, 0)
    const bits = decodeRle({ size: [2, 3], counts: [0, 2, 1, 1, 2] })
    expect(Array.from(bits)).toEqual([1, 1, 0, 1, 0, 0])
    expect(Array.from(decodeRle({ size: [2, 2], counts: [4] }))).toEqual([0, 0, 0, 0])
  })

  it('refuses runs that do not cover the image', () => {
    expect(() => decodeRle({ size: [2, 2], counts: [1, 2] })).toThrow(/3 pixels/)
  })

  it('paints the object at any display size', () => {
    // 2 rows x 4 columns; the object is the right half.
    const rle = { size: [2, 4], counts: [4, 4] }
    const same = maskOverlay(rle, 4, 2, [10, 20, 30], 99)
    const alpha = (pixels, w, x, y) => pixels[(y * w + x) * 4 + 3]
    expect([0, 1, 2, 3].map((x) => alpha(same, 4, x, 0))).toEqual([0, 0, 99, 99])
    expect(Array.from(same.slice((1 * 4 + 3) * 4, (1 * 4 + 3) * 4 + 4))).toEqual([10, 20, 30, 99])
    // Twice as large, and half as large: the nearest image pixel decides.
    const big = maskOverlay(rle, 8, 4, [1, 2, 3], 50)
    expect([0, 3, 4, 7].map((x) => alpha(big, 8, x, 3))).toEqual([0, 0, 50, 50])
    const small = maskOverlay(rle, 2, 1, [1, 2, 3], 50)
    expect([alpha(small, 2, 0, 0), alpha(small, 2, 1, 0)]).toEqual([0, 50])
  })
})
