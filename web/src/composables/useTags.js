import { ref } from 'vue'
import { api } from '../api/client.js'

/** The gallery's tags for filters; an error leaves the list empty (filters are optional). */
export function useTags() {
  const tags = ref([])
  async function refresh() {
    try {
      tags.value = (await api.tags()).tags || []
    } catch {
      tags.value = []
    }
  }
  return { tags, refresh }
}
