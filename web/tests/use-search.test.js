import { describe, expect, it } from 'vitest'
import { useSearch } from '../src/composables/useSearch.js'

const page = (n, total, exact) => ({
  results: Array.from({ length: n }, (_, i) => ({ id: i, score: 1 - i / 100 })),
  total,
  total_exact: exact,
})

describe('useSearch', () => {
  it('keeps whether the total is exact, for every view that shows it', async () => {
    const { state, run, loadMore, hasMore } = useSearch()
    await run((offset) => Promise.resolve(offset === 0 ? page(20, 30, false) : page(10, 30, true)))
    expect(state.total).toBe(30)
    expect(state.totalExact).toBe(false)
    expect(hasMore.value).toBe(true)
    await loadMore()
    expect(state.results).toHaveLength(30)
    expect(state.totalExact).toBe(true)
    // a new query starts exact again until its first page says otherwise
    const pending = run(() => Promise.resolve(page(3, 3, undefined)))
    expect(state.totalExact).toBe(true)
    await pending
    expect(state.totalExact).toBe(true)
  })
})
