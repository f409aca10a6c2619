// The gateway's public API (docs/api.md) as plain functions. Every failure becomes an
// ApiError carrying the server's stable error code, so views can show a translated message
// and tests can assert the code.

const BASE = '/api/v1'
const TOKEN_KEY = 'imgsearch.token'

export class ApiError extends Error {
  constructor(status, code, message, detail = null) {
    super(message || code)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.detail = detail
  }
}

const LOGIN_CODES = new Set(['not_authenticated', 'invalid_token', 'token_expired'])

/** True when signing in (again) would fix this error. */
export function needsLogin(error) {
  return Boolean(error && LOGIN_CODES.has(error.code))
}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY)
  } catch {
    return null
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token)
    else sessionStorage.removeItem(TOKEN_KEY)
  } catch {
    // Storage may be disabled (private mode); the session then lasts one page load.
  }
}

function authHeaders() {
  const token = getToken()
  return token ? { Authorization: `Bearer ${token}` } : {}
}

/** Turns a non-2xx response into an ApiError, whatever its body is. */
export async function errorFromResponse(response) {
  let body = null
  try {
    body = await response.json()
  } catch {
    body = null
  }
  const err = body && typeof body === 'object' ? body.error : null
  if (err && typeof err.code === 'string') {
    return new ApiError(response.status, err.code, err.message, err.detail ?? null)
  }
  return new ApiError(response.status, `http_${response.status}`, response.statusText || '')
}

export async function request(path, { method = 'GET', json, form, query, signal } = {}) {
  const url = new URL(BASE + path, window.location.origin)
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, value)
  }
  const headers = { Accept: 'application/json', ...authHeaders() }
  let body
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(json)
  } else if (form !== undefined) {
    body = form
  }
  let response
  try {
    response = await fetch(url.pathname + url.search, { method, headers, body, signal })
  } catch (cause) {
    if (cause && cause.name === 'AbortError') throw cause
    throw new ApiError(0, 'network_error', String(cause && cause.message ? cause.message : cause))
  }
  if (!response.ok) throw await errorFromResponse(response)
  if (response.status === 204) return null
  try {
    return await response.json()
  } catch {
    throw new ApiError(response.status, 'invalid_response', 'the server sent no JSON')
  }
}

/** FormData from an object; undefined/null/'' values are left out, Blobs keep a filename. */
export function toForm(fields) {
  const form = new FormData()
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined || value === null || value === '') continue
    if (value instanceof Blob) form.append(key, value, value.name || `${key}.png`)
    else if (typeof value === 'object') form.append(key, JSON.stringify(value))
    else form.append(key, String(value))
  }
  return form
}

function searchFields({ k, offset, minScore, tags }) {
  return {
    k,
    offset,
    min_score: minScore,
    tags: tags && tags.length ? tags.join(',') : undefined,
  }
}

export const api = {
  config: () => request('/config'),
  login: (username, password) =>
    request('/auth/login', { method: 'POST', json: { username, password } }),
  me: () => request('/me'),
  tags: () => request('/tags'),

  /** Search by an uploaded image (`file`) or by a catalog image (`imageId`). */
  search: ({ file, imageId, ...opts }, signal) =>
    request('/search', {
      method: 'POST',
      form: toForm({ file, image_id: imageId, ...searchFields(opts) }),
      signal,
    }),
  searchSketch: ({ file, ...opts }, signal) =>
    request('/search/sketch', {
      method: 'POST',
      form: toForm({ file, ...searchFields(opts) }),
      signal,
    }),
  /** Encodes the query image (`file` or catalog `imageId`) as it is chosen, so its first click
   * runs the mask decoder only; answers { image_sha256, width, height, encoder_cached }. */
  prepare: ({ file, imageId }, signal) =>
    request('/segment/prepare', {
      method: 'POST',
      form: toForm({ file, image_id: imageId }),
      signal,
    }),
  /** A mask from clicks on `file`, catalog image `imageId`, or `imageSha256` (the hash of an
   * earlier answer: no upload); `outputs` e.g. 'rle' (default: every part). */
  segment: ({ file, imageId, imageSha256, prompts, outputs }, signal) =>
    request('/segment', {
      method: 'POST',
      form: toForm({ file, image_id: imageId, image_sha256: imageSha256, prompts, outputs }),
      signal,
    }),
  searchRegion: ({ file, imageId, prompts, mode, ...opts }, signal) =>
    request('/search/region', {
      method: 'POST',
      form: toForm({ file, image_id: imageId, prompts, mode, ...searchFields(opts) }),
      signal,
    }),
  heatmap: ({ queryFile, queryImageId, imageId }, signal) =>
    request('/heatmap', {
      method: 'POST',
      form: toForm({ query: queryFile, query_image_id: queryImageId, image_id: imageId }),
      signal,
    }),

  images: (query) => request('/images', { query }),
  image: (id) => request(`/images/${encodeURIComponent(id)}`),
  deleteImages: (ids) => request('/admin/images/delete', { method: 'POST', json: { ids } }),
  reindex: () => request('/admin/reindex', { method: 'POST' }),
  reconcile: () => request('/admin/reconcile', { method: 'POST' }),
  stats: () => request('/admin/stats'),
  job: (id) => request(`/jobs/${encodeURIComponent(id)}`),
  /** A short-lived ticket opening this job's event stream (EventSource sends no token, and
   * tokens never go in URLs): { ticket, expires_in }. */
  jobEventsTicket: (id) =>
    request(`/jobs/${encodeURIComponent(id)}/events/ticket`, { method: 'POST' }),
}
