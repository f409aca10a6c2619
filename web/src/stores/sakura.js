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
