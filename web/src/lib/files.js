// What a chosen file is, from its first bytes (the name and the browser's type can lie):
// a text file renamed .jpg is not an image, whatever it says.

const SIGNATURES = [
  [0xff, 0xd8, 0xff], // JPEG
  [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], // PNG
  [0x47, 0x49, 0x46, 0x38], // GIF8
  [0x42, 0x4d], // BMP
  [0x49, 0x49, 0x2a, 0x00], // TIFF, little-endian
  [0x4d, 0x4d, 0x00, 0x2a], // TIFF, big-endian
]

function startsWith(bytes, signature) {
  return signature.every((b, i) => bytes[i] === b)
}

/** 'image' | 'empty' | 'not_image' for these leading bytes (at least 12 of them). */
export function sniff(bytes) {
  if (!bytes || bytes.length === 0) return 'empty'
  if (SIGNATURES.some((s) => startsWith(bytes, s))) return 'image'
  // WebP: RIFF....WEBP
  const ascii = (from, to) => String.fromCharCode(...bytes.slice(from, to))
  if (bytes.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'image'
  return 'not_image'
}

async function head(file, n) {
  const part = file.slice(0, n)
  if (typeof part.arrayBuffer === 'function') return new Uint8Array(await part.arrayBuffer())
  return new Uint8Array(
    await new Promise((resolve, reject) => {
      const reader = new FileReader()
      reader.onload = () => resolve(reader.result)
      reader.onerror = () => reject(reader.error)
      reader.readAsArrayBuffer(part)
    }),
  )
}

/** The translation key of what is wrong with `file` as a query image, or '' if nothing. */
export async function fileProblem(file) {
  if (!file || file.size === 0) return 'input.empty'
  const kind = sniff(await head(file, 16))
  return kind === 'image' ? '' : kind === 'empty' ? 'input.empty' : 'input.notImage'
}

/** Hex SHA-256 of a Blob, or null where the browser offers no digest (plain http). */
export async function sha256Hex(blob) {
  const subtle = globalThis.crypto?.subtle
  if (!subtle) return null
  const digest = await subtle.digest('SHA-256', await blob.arrayBuffer())
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('')
}
