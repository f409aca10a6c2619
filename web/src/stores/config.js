// GET /api/v1/config, loaded once at start: feature switches, the model, sakura settings.
import { reactive } from 'vue'
import { api } from '../api/client.js'

export const DEFAULT_CONFIG = {
  public_search: true,
  model: { id: '', dim: 0, random_weights: false },
  segmentation: { available: false, random_weights: false },
  // The original SakuraEffect.vue constants: SAKURA_COUNT, FALL_SPEED, SHOW_SAKURA.
  sakura: { enabled: true, count: 30, fall_speed: 1.5 },
  limits: { max_upload_bytes: 20_000_000, max_files_per_request: 32 },
  // The statuses an admin may filter images by: the server's list (no copy kept here).
  image_statuses: [],
}

export const configState = reactive({
  loaded: false,
  error: null,
  config: structuredClone(DEFAULT_CONFIG),
})

export async function loadConfig() {
  try {
    const remote = await api.config()
    const merged = structuredClone(DEFAULT_CONFIG)
    for (const [key, value] of Object.entries(remote || {})) {
      merged[key] =
        value && typeof value === 'object' && !Array.isArray(value)
          ? { ...merged[key], ...value }
          : value
    }
    configState.config = merged
    configState.error = null
  } catch (error) {
    configState.error = error
  } finally {
    configState.loaded = true
  }
  return configState.config
}
