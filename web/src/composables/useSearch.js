// Paged search results: run() starts a new query, loadMore() appends the next page.
// A newer query makes the answers of older ones void (no out-of-order grids).
import { computed, reactive } from 'vue'

export function useSearch() {
  const state = reactive({
    results: [],
    total: 0,
    // false when the server found `total` results so far and more may follow ("at least")
    totalExact: true,
    offset: 0,
    k: 20,
    loading: false,
    error: null,
    searched: false,
    tookMs: null,
  })
  let fetchPage = null
  let generation = 0

  async function load(offset) {
    const mine = generation
    state.loading = true
    state.error = null
    try {
      const page = await fetchPage(offset)
      if (mine !== generation) return
      state.results = offset === 0 ? page.results : [...state.results, ...page.results]
      state.total = page.total ?? state.results.length
      state.totalExact = page.total_exact !== false
      state.offset = offset + page.results.length
      state.k = page.k ?? state.k
      state.tookMs = page.took_ms ?? null
      state.searched = true
    } catch (error) {
      if (mine === generation) state.error = error
    } finally {
      if (mine === generation) state.loading = false
    }
  }

  /** @param {(offset: number) => Promise<object>} pageFn fetches one result page */
  function run(pageFn) {
    generation += 1
    fetchPage = pageFn
    state.results = []
    state.total = 0
    state.totalExact = true
    state.offset = 0
    return load(0)
  }

  function loadMore() {
    if (!fetchPage || state.loading || !hasMore.value) return Promise.resolve()
    return load(state.offset)
  }

  function reset() {
    generation += 1
    fetchPage = null
    Object.assign(state, {
      results: [], total: 0, totalExact: true, offset: 0, error: null, searched: false,
    })
    state.loading = false
  }

  const hasMore = computed(() => state.searched && state.results.length < state.total)

  return { state, run, loadMore, reset, hasMore }
}
