import { afterEach, describe, expect, it, vi } from 'vitest'

vi.mock('../src/api/client.js', async (importOriginal) => {
  const actual = await importOriginal()
  return { ...actual, api: { job: vi.fn() } }
})

const { api, setToken } = await import('../src/api/client.js')
const { watchJob, isFinished } = await import('../src/api/jobs.js')

class FakeEventSource {
  static last = null
  constructor(url) {
    this.url = url
    this.listeners = {}
    this.closed = false
    FakeEventSource.last = this
  }
  addEventListener(type, fn) {
    this.listeners[type] = fn
  }
  emit(type, data) {
    this.listeners[type]?.({ data: JSON.stringify(data) })
  }
  close() {
    this.closed = true
  }
}

describe('watchJob', () => {
  afterEach(() => {
    vi.unstubAllGlobals()
    vi.useRealTimers()
    api.job.mockReset()
    setToken(null)
  })

  it('follows the event stream with the token in the query, until done', async () => {
    vi.stubGlobal('EventSource', FakeEventSource)
    setToken('abc')
    const updates = []
    const final = { id: 5, status: 'succeeded', done: 2, total: 2 }
    api.job.mockResolvedValue(final)
    const watcher = watchJob(5, (job) => updates.push(job))
    const source = FakeEventSource.last
    expect(source.url).toBe('/api/v1/jobs/5/events?access_token=abc')
    source.emit('progress', { id: 5, status: 'running', done: 1, total: 2 })
    source.emit('done', { id: 5, status: 'running', done: 1, total: 2 })
    expect(await watcher.done).toEqual(final)
    expect(updates.map((j) => j.done)).toEqual([1, 1, 2])
    expect(source.closed).toBe(true)
  })

  it('falls back to polling when the stream fails', async () => {
    vi.useFakeTimers()
    vi.stubGlobal('EventSource', FakeEventSource)
    api.job
      .mockResolvedValueOnce({ id: 9, status: 'running', done: 0, total: 3 })
      .mockRejectedValueOnce(new Error('blip'))
      .mockResolvedValueOnce({ id: 9, status: 'failed', done: 2, failed: 1, total: 3 })
    const updates = []
    const watcher = watchJob(9, (job) => updates.push(job.status), { pollMs: 100 })
    FakeEventSource.last.onerror()
    expect(FakeEventSource.last.closed).toBe(true)
    await vi.advanceTimersByTimeAsync(350)
    const final = await watcher.done
    expect(final.status).toBe('failed')
    expect(updates).toEqual(['running', 'failed'])
    expect(api.job).toHaveBeenCalledTimes(3)
    // Finished: no more polls.
    await vi.advanceTimersByTimeAsync(1000)
    expect(api.job).toHaveBeenCalledTimes(3)
  })

  it('knows the finished states', () => {
    expect(isFinished({ status: 'succeeded' })).toBe(true)
    expect(isFinished({ status: 'cancelled' })).toBe(true)
    expect(isFinished({ status: 'running' })).toBe(false)
    expect(isFinished({ status: 'queued', finished_at: null })).toBe(false)
  })
})
