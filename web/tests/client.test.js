import { afterEach, describe, expect, it, vi } from 'vitest'
import { ApiError, api, request, setToken } from '../src/api/client.js'

function jsonResponse(status, body, statusText = '') {
  return new Response(JSON.stringify(body), {
    status,
    statusText,
    headers: { 'Content-Type': 'application/json' },
  })
}

describe('API client', () => {
  afterEach(() => {
    vi.unstubAllGlobals()
    setToken(null)
  })

  it('turns the error envelope into an ApiError with the stable code', async () => {
    vi.stubGlobal('fetch', vi.fn(async () =>
      jsonResponse(429, { error: { code: 'rate_limited', message: 'slow down', detail: { retry_after: 3 } } }),
    ))
    const error = await api.login('a', 'b').catch((e) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(error.status).toBe(429)
    expect(error.code).toBe('rate_limited')
    expect(error.message).toBe('slow down')
    expect(error.detail).toEqual({ retry_after: 3 })
  })

  it('copes with a non-JSON error body', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response('<h1>Bad gateway</h1>', { status: 502, statusText: 'Bad Gateway' })))
    const error = await request('/config').catch((e) => e)
    expect(error.code).toBe('http_502')
    expect(error.status).toBe(502)
  })

  it('reports a network failure as network_error', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => {
      throw new TypeError('Failed to fetch')
    }))
    const error = await api.tags().catch((e) => e)
    expect(error.code).toBe('network_error')
    expect(error.status).toBe(0)
  })

  it('passes aborts through untouched', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => {
      throw new DOMException('aborted', 'AbortError')
    }))
    const error = await api.tags().catch((e) => e)
    expect(error.name).toBe('AbortError')
  })

  it('rejects a 2xx answer that is not JSON', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response('ok', { status: 200 })))
    const error = await api.config().catch((e) => e)
    expect(error.code).toBe('invalid_response')
  })

  it('sends the bearer token and search fields as multipart', async () => {
    const fetchMock = vi.fn(async () => jsonResponse(200, { results: [], total: 0 }))
    vi.stubGlobal('fetch', fetchMock)
    setToken('tok123')
    const file = new File([new Uint8Array([1, 2, 3])], 'q.png', { type: 'image/png' })
    await api.search({ file, k: 5, offset: 10, minScore: 0.2, tags: ['cat', 'pet'] })
    const [url, init] = fetchMock.mock.calls[0]
    expect(url).toBe('/api/v1/search')
    expect(init.method).toBe('POST')
    expect(init.headers.Authorization).toBe('Bearer tok123')
    const form = init.body
    expect(form.get('k')).toBe('5')
    expect(form.get('offset')).toBe('10')
    expect(form.get('min_score')).toBe('0.2')
    expect(form.get('tags')).toBe('cat,pet')
    expect(form.get('file').name).toBe('q.png')
    expect(form.has('image_id')).toBe(false)
  })

  it('sends segment prompts as JSON text and image ids as fields', async () => {
    const fetchMock = vi.fn(async () => jsonResponse(200, { mask_png_b64: '' }))
    vi.stubGlobal('fetch', fetchMock)
    const prompts = { points: [{ x: 3, y: 4, label: 1 }], box: [0, 0, 9, 9] }
    await api.segment({ imageId: 42, prompts })
    const form = fetchMock.mock.calls[0][1].body
    expect(form.get('image_id')).toBe('42')
    expect(JSON.parse(form.get('prompts'))).toEqual(prompts)
    expect(form.has('image_sha256')).toBe(false)
    expect(form.has('outputs')).toBe(false)

    await api.segment({ imageSha256: 'ab'.repeat(32), prompts, outputs: 'rle,low_res' })
    const later = fetchMock.mock.calls[1][1].body
    expect(later.get('image_sha256')).toBe('ab'.repeat(32))
    expect(later.get('outputs')).toBe('rle,low_res')
    expect(later.has('file')).toBe(false)
    expect(later.has('image_id')).toBe(false)
  })
})

describe('needsLogin', async () => {
  const { needsLogin } = await import('../src/api/client.js')
  it('is true only for errors a sign-in fixes', () => {
    expect(needsLogin(new ApiError(401, 'not_authenticated', ''))).toBe(true)
    expect(needsLogin(new ApiError(401, 'token_expired', ''))).toBe(true)
    expect(needsLogin(new ApiError(403, 'forbidden', ''))).toBe(false)
    expect(needsLogin(null)).toBe(false)
  })
})
