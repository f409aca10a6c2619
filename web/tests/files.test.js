import { describe, expect, it } from 'vitest'
import { fileProblem, sniff } from '../src/lib/files.js'

const bytes = (...values) => new Uint8Array(values)

describe('files', () => {
  it('knows image formats by their first bytes', () => {
    expect(sniff(bytes(0xff, 0xd8, 0xff, 0xe0))).toBe('image')
    expect(sniff(bytes(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a))).toBe('image')
    expect(sniff(new TextEncoder().encode('GIF89a'))).toBe('image')
    expect(sniff(new TextEncoder().encode('RIFF\0\0\0\0WEBPVP8 '))).toBe('image')
    expect(sniff(new TextEncoder().encode('hello, this is text'))).toBe('not_image')
    expect(sniff(bytes())).toBe('empty')
  })

  it('names the problem of a chosen file, whatever its name and type say', async () => {
    const text = new File(['just some text'], 'photo.jpg', { type: 'image/jpeg' })
    expect(await fileProblem(text)).toBe('input.notImage')
    expect(await fileProblem(new File([], 'empty.jpg', { type: 'image/jpeg' }))).toBe('input.empty')
    const png = new File([bytes(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0)], 'x.png')
    expect(await fileProblem(png)).toBe('')
  })
})
