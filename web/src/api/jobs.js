// Follows a job until it finishes: server-sent events first, polling GET /jobs/{id} when
// the stream fails. EventSource cannot send headers and tokens never go in URLs: the stream
// opens with a short-lived ticket for this job's stream only (POST /jobs/{id}/events/ticket).

import { api } from './client.js'

// The server says whether a job has ended (`finished`: services/common/vocabulary.py holds
// the job lifecycle); no copy of the statuses lives here.
export function isFinished(job) {
  return Boolean(job && job.finished)
}

/**
 * @param {string|number} jobId
 * @param {(job: object) => void} onUpdate called with each new job state
 * @param {{pollMs?: number, useEvents?: boolean}} options
 * @returns {{stop: () => void, done: Promise<object>}}
 */
export function watchJob(jobId, onUpdate, { pollMs = 1000, useEvents = true } = {}) {
  let stopped = false
  let source = null
  let timer = null
  let resolveDone
  const done = new Promise((resolve) => {
    resolveDone = resolve
  })

  const finish = (job) => {
    stop()
    resolveDone(job)
  }
  const update = (job) => {
    if (stopped) return
    onUpdate(job)
    if (isFinished(job)) finish(job)
  }

  const poll = async () => {
    if (stopped) return
    try {
      update(await api.job(jobId))
    } catch {
      // A transient error: the next poll tries again.
    }
    if (!stopped) timer = setTimeout(poll, pollMs)
  }

  function stop() {
    stopped = true
    if (source) source.close()
    if (timer) clearTimeout(timer)
  }

  const listen = async () => {
    let ticket
    try {
      ticket = (await api.jobEventsTicket(jobId)).ticket
    } catch {
      poll()
      return
    }
    if (stopped) return
    const query = `?ticket=${encodeURIComponent(ticket)}`
    source = new EventSource(`/api/v1/jobs/${encodeURIComponent(jobId)}/events${query}`)
    const onData = (event) => {
      try {
        update(JSON.parse(event.data))
      } catch {
        // Not a job document (a keep-alive); ignore it.
      }
    }
    source.addEventListener('progress', onData)
    source.addEventListener('message', onData)
    source.addEventListener('done', async (event) => {
      onData(event)
      if (!stopped) {
        // The final state from the document itself, whatever the done event carried.
        try {
          update(await api.job(jobId))
        } catch {
          stop()
        }
        if (!stopped) finish(null)
      }
    })
    source.onerror = () => {
      // Also when the ticket has expired by a reconnect: polling needs none.
      if (stopped) return
      source.close()
      source = null
      poll()
    }
  }

  if (useEvents && typeof EventSource !== 'undefined') listen()
  else poll()
  return { stop, done }
}
