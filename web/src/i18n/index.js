// A small i18n: two locales, dotted keys, {name} placeholders. The choice is remembered in
// localStorage; otherwise zh-CN when the browser prefers Chinese.
import { ref } from 'vue'
import { messages } from './messages.js'

export const LOCALES = [
  { code: 'en', label: 'English' },
  { code: 'zh-CN', label: '简体中文' },
]
const STORAGE_KEY = 'imgsearch.locale'

/** The locale for a browser language list (navigator.languages), English by default. */
export function pickLocale(languages) {
  for (const lang of languages || []) {
    const lower = String(lang).toLowerCase()
    if (lower.startsWith('zh')) return 'zh-CN'
    if (lower.startsWith('en')) return 'en'
  }
  return 'en'
}

function initialLocale() {
  try {
    const saved = localStorage.getItem(STORAGE_KEY)
    if (saved && messages[saved]) return saved
  } catch {
    // No storage: fall through to the browser's preference.
  }
  const nav = typeof navigator !== 'undefined' ? navigator : {}
  return pickLocale(nav.languages && nav.languages.length ? nav.languages : [nav.language])
}

export const locale = ref(initialLocale())

export function setLocale(code) {
  if (!messages[code]) return
  locale.value = code
  try {
    localStorage.setItem(STORAGE_KEY, code)
  } catch {
    // Not remembered, still applied.
  }
  if (typeof document !== 'undefined') document.documentElement.lang = code
}

function lookup(table, key) {
  return key.split('.').reduce((node, part) => (node == null ? undefined : node[part]), table)
}

/** The text of key in one locale: `key_one` etc. when a count (`n` or `total`) takes that
 * plural form there and the locale has it (Intl.PluralRules), else key itself. */
function find(code, key, params) {
  const count = params.n ?? params.total
  if (typeof count === 'number') {
    const form = new Intl.PluralRules(code).select(count)
    const text = lookup(messages[code], `${key}_${form}`)
    if (text !== undefined) return text
  }
  return lookup(messages[code], key)
}

/** The string for key in the current locale (English, then the key itself, as fallbacks). */
export function t(key, params = {}) {
  const text = find(locale.value, key, params) ?? find('en', key, params) ?? key
  return String(text).replace(/\{(\w+)\}/g, (_, name) =>
    params[name] !== undefined ? String(params[name]) : `{${name}}`,
  )
}

/** The name of `value` in a translated group (e.g. 'admin.statuses'), lower-cased first;
 * the value itself when the group has no name for it. */
export function label(group, value) {
  const key = `${group}.${String(value ?? '').toLowerCase()}`
  return lookup(messages[locale.value], key) ?? lookup(messages.en, key) ?? String(value ?? '')
}

/** A translated message for an ApiError (or any error), the server's message as fallback. */
export function errorText(error) {
  if (!error) return ''
  const code = error.code
  if (code && lookup(messages[locale.value], `errors.${code}`)) return t(`errors.${code}`)
  if (error.message && error.message !== code) return error.message
  return t('errors.generic', { code: code || 'unknown' })
}

export function useI18n() {
  return { t, label, locale, setLocale, errorText, LOCALES }
}
