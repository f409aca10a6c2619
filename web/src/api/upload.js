// Admin upload through XMLHttpRequest, the one browser API that reports upload progress.
// Files go in batches (the server's max_files_per_request); within one multipart body the
// files are sent in order, so the bytes sent so far tell how far each file has got.

import { ApiError, getToken } from './client.js'

/**
 * Per-file progress from the bytes of one request body sent so far.
 * @param {number[]} sizes file sizes in bytes, in body order
 * @param {number} loaded bytes sent so far
 * @param {number} total the whole body's size in bytes (multipart overhead included)
 * @returns {number[]} progress 0..1 per file
 */
export function splitProgress(sizes, loaded, total) {
  if (loaded >= total) return sizes.map(() => 1)
  const payload = sizes.reduce((a, b) => a + b, 0)
  // Spread the multipart boundaries and headers evenly: they are small next to images.
  const overhead = Math.max(0, total - payload) / Math.max(1, sizes.length)
  let start = 0
  return sizes.map((size) => {
    const span = size + overhead
    const done = Math.min(Math.max(loaded - start, 0), span)
    start += span
    return span > 0 ? done / span : 1
  })
}

/** Splits files into batches of at most maxFiles files and maxBytes bytes (a lone larger
 * file still gets its own batch, the server then rejects it with its own error code). */
export function batchFiles(files, maxFiles, maxBytes) {
  const batches = []
  let current = []
  let bytes = 0
  for (const file of files) {
    if (current.length && (current.length >= maxFiles || bytes + file.size > maxBytes)) {
      batches.push(current)
      current = []
      bytes = 0
    }
    current.push(file)
    bytes += file.size
  }
  if (current.length) batches.push(current)
  return batches
}

/**
 * POST /api/v1/admin/images with progress.
 * @param {File[]} files
 * @param {{tags?: string, onNearDuplicate?: string}} options
 * @param {(fractions: number[]) => void} onProgress per-file fractions 0..1
 * @returns {Promise<object>} the 202 body: job_id, images, rejected
 */
export function uploadBatch(files, { tags = '', onNearDuplicate = 'keep' } = {}, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData()
    for (const file of files) form.append('file', file, file.name)
    if (tags) form.append('tags', tags)
    form.append('on_near_duplicate', onNearDuplicate)
    const xhr = new XMLHttpRequest()
    xhr.open('POST', '/api/v1/admin/images')
    const token = getToken()
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`)
    xhr.setRequestHeader('Accept', 'application/json')
    const sizes = files.map((f) => f.size)
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && onProgress) {
        onProgress(splitProgress(sizes, event.loaded, event.total))
      }
    }
    xhr.onload = () => {
      let body = null
      try {
        body = JSON.parse(xhr.responseText)
      } catch {
        body = null
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        if (onProgress) onProgress(sizes.map(() => 1))
        resolve(body)
        return
      }
      const err = body && body.error
      reject(
        err && err.code
          ? new ApiError(xhr.status, err.code, err.message, err.detail ?? null)
          : new ApiError(xhr.status, `http_${xhr.status}`, xhr.statusText || ''),
      )
    }
    xhr.onerror = () => reject(new ApiError(0, 'network_error', 'upload failed'))
    xhr.onabort = () => reject(new ApiError(0, 'aborted', 'upload cancelled'))
    xhr.send(form)
  })
}
