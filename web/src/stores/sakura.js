// The visitor's own sakura switch, remembered in localStorage; null means "as configured".
import { ref } from 'vue'

const KEY = 'imgsearch.sakura'

function read() {
  try {
    const value = localStorage.getItem(KEY)
    return value === 'on' ? true : value === 'off' ? false : null
  } catch {
    return null
  }
}

export const sakuraPreference = ref(read())

export function setSakuraPreference(on) {
  sakuraPreference.value = Boolean(on)
  try {
    localStorage.setItem(KEY, on ? 'on' : 'off')
  } catch {
    // Not remembered across visits; still applied now.
  }
}

// The device asks for reduced motion: no petals fall, whatever the switch says.
const motionQuery =
  typeof window !== 'undefined' && window.matchMedia
    ? window.matchMedia('(prefers-reduced-motion: reduce)')
    : null
export const reducedMotion = ref(Boolean(motionQuery?.matches))
motionQuery?.addEventListener?.('change', (event) => {
  reducedMotion.value = event.matches
})
