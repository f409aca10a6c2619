import { afterEach, describe, expect, it } from 'vitest'
import { locale, pickLocale, setLocale, t, errorText } from '../src/i18n/index.js'
import { messages } from '../src/i18n/messages.js'
import { ApiError } from '../src/api/client.js'

function keys(node, prefix = '') {
  return Object.entries(node).flatMap(([k, v]) =>
    typeof v === 'object' ? keys(v, `${prefix}${k}.`) : [`${prefix}${k}`],
  )
}

const PLURAL_FORM = /_(zero|one|two|few|many)$/

const lookupEn = (key) => key.split('.').reduce((node, part) => node?.[part], messages.en)

describe('i18n', () => {
  afterEach(() => {
    setLocale('en')
    localStorage.clear()
  })

  it('prefers zh-CN when the browser prefers Chinese, English otherwise', () => {
    expect(pickLocale(['zh-CN', 'en'])).toBe('zh-CN')
    expect(pickLocale(['zh-TW'])).toBe('zh-CN')
    expect(pickLocale(['en-US', 'zh-CN'])).toBe('en')
    expect(pickLocale(['fr-FR', 'zh'])).toBe('zh-CN')
    expect(pickLocale(['de-DE'])).toBe('en')
    expect(pickLocale([])).toBe('en')
  })

  it('switches language, remembers it and fills placeholders', () => {
    setLocale('zh-CN')
    expect(locale.value).toBe('zh-CN')
    expect(localStorage.getItem('imgsearch.locale')).toBe('zh-CN')
    expect(t('nav.sketch')).toBe('画板模式')
    expect(t('search.results', { total: 3 })).toBe('共 3 个结果')
    setLocale('en')
    expect(t('search.results', { total: 3 })).toBe('3 results')
    setLocale('xx')
    expect(locale.value).toBe('en')
  })

  it('has every English key in Chinese too (plural forms are each language\'s own)', () => {
    const base = (code) => keys(messages[code]).filter((k) => !PLURAL_FORM.test(k)).sort()
    expect(base('zh-CN')).toEqual(base('en'))
  })

  it('has a one-form for every English text that counts things', () => {
    // texts whose count names no noun of its own read right for 1 as they are
    const neutral = ['admin.deleteSelected', 'admin.jobStatus']
    const counted = keys(messages.en).filter(
      (k) => !PLURAL_FORM.test(k) && /\{(n|total)\}/.test(lookupEn(k)) && !neutral.includes(k),
    )
    expect(counted.length).toBeGreaterThan(3)
    for (const k of counted) expect(lookupEn(`${k}_one`), k).toBeTypeOf('string')
    expect(t('admin.confirmBody', { n: 1 })).toBe(
      '1 image will be removed from disk, catalog and index. This cannot be undone.')
    expect(t('admin.confirmTitle', { n: 2 })).toBe('Delete images?')
  })

  it('takes the plural form the count needs where the language has one', () => {
    expect(t('admin.start', { n: 1 })).toBe('Upload 1 file')
    expect(t('admin.start', { n: 3 })).toBe('Upload 3 files')
    expect(t('search.results', { total: 1 })).toBe('1 result')
    expect(t('search.results', { total: 0 })).toBe('0 results')
    setLocale('zh-CN')
    expect(t('search.results', { total: 1 })).toBe('共 1 个结果')
  })

  it('translates known error codes and falls back to the server message', () => {
    setLocale('zh-CN')
    expect(errorText(new ApiError(401, 'invalid_credentials', 'bad'))).toBe('用户名或密码错误。')
    expect(errorText(new ApiError(400, 'image_too_large', 'too big'))).toBe('图片太大（像素过多）。')
    expect(errorText(new ApiError(400, 'a_code_from_the_future', 'too big'))).toBe('too big')
    expect(errorText(new ApiError(500, 'http_500', ''))).toBe('出错了（http_500）。')
  })
})
