// The signed-in user. The JWT lives in sessionStorage (gone with the tab); the user record
// is re-read from GET /me at start so a stale token is dropped at once.
import { reactive } from 'vue'
import { api, getToken, setToken } from '../api/client.js'

export const auth = reactive({ user: null, checked: false })

export async function restoreSession() {
  if (!getToken()) {
    auth.checked = true
    return null
  }
  try {
    auth.user = await api.me()
  } catch (error) {
    if (error.status === 401) setToken(null)
    auth.user = null
  } finally {
    auth.checked = true
  }
  return auth.user
}

export async function login(username, password) {
  const body = await api.login(username, password)
  setToken(body.access_token)
  auth.user = body.user
  return body.user
}

export function logout() {
  setToken(null)
  auth.user = null
}

export const isAdmin = () => Boolean(auth.user && auth.user.role === 'admin')
