import { afterEach, describe, expect, it, vi } from 'vitest'

vi.mock('../src/api/client.js', async (importOriginal) => {
  const actual = await importOriginal()
  return { ...actual, api: { job: vi.fn(), jobEventsTicket: vi.fn() } }
})

const { api } = await import('../src/api/client.js')
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
    api.jobEventsTicket.mockReset()
  })

  it('opens the event stream with a ticket, never the token, and follows it until done', async () => {
    vi.stubGlobal('EventSource', FakeEventSource)
    FakeEventSource.last = null
    api.jobEventsTicket.mockResolvedValue({ ticket: 'tk.1+/', expires_in: 60 })
    const updates = []
    const final = { id: 5, status: 'succeeded', finished: true, done: 2, total: 2 }
    api.job.mockResolvedValue(final)
    const watcher = watchJob(5, (job) => updates.push(job))
    await vi.waitFor(() => expect(FakeEventSource.last).not.toBeNull())
    const source = FakeEventSource.last
    expect(api.jobEventsTicket).toHaveBeenCalledWith(5)
    expect(source.url).toBe('/api/v1/jobs/5/events?ticket=tk.1%2B%2F')
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
      .mockResolvedValueOnce({ id: 9, status: 'failed', finished: true, done: 2, failed: 1, total: 3 })
    api.jobEventsTicket.mockResolvedValue({ ticket: 't', expires_in: 60 })
    FakeEventSource.last = null
    const updates = []
    const watcher = watchJob(9, (job) => updates.push(job.status), { pollMs: 100 })
    await vi.advanceTimersByTimeAsync(0)
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

  it('polls when no ticket is given', async () => {
    vi.stubGlobal('EventSource', FakeEventSource)
    FakeEventSource.last = null
    api.jobEventsTicket.mockRejectedValue(new Error('403'))
    api.job.mockResolvedValue({ id: 3, status: 'succeeded', finished: true, done: 1, total: 1 })
    const final = await watchJob(3, () => {}).done
    expect(final.status).toBe('succeeded')
    expect(FakeEventSource.last).toBeNull()
  })

  it('knows the finished states', () => {
    expect(isFinished({ status: 'succeeded', finished: true })).toBe(true)
    expect(isFinished({ status: 'cancelled', finished: true })).toBe(true)
    expect(isFinished({ status: 'running', finished: false })).toBe(false)
    expect(isFinished({ status: 'queued', finished_at: null })).toBe(false)
  })
})
