// Every error code the API can return has a sentence in every language. The codes are read
// from the Python sources: `code = "..."` on error classes, `code="..."` where errors are
// raised, the status-code fallbacks and `error_response(status, "code", ...)` calls.
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { messages } from '../src/i18n/messages.js'

const ROOT = resolve(__dirname, '..', '..')
const SOURCES = ['services', 'gateway', 'imgsearch']
const PATTERNS = [
  /\bcode\s*(?::\s*str\s*)?=\s*"([a-z][a-z0-9_]*)"/g,
  /error_response\(\s*[\w.]+,\s*"([a-z][a-z0-9_]*)"/g,
  /^\s*\d{3}:\s*"([a-z][a-z0-9_]*)"/gm,
  /_STATUS_CODES\.get\([^,]+,\s*"([a-z][a-z0-9_]*)"\)/g,
]
// Made by the web app itself (api/client.js).
const CLIENT_CODES = ['network_error', 'invalid_response']

function pythonFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return name === '__pycache__' ? [] : pythonFiles(path)
    return name.endsWith('.py') ? [path] : []
  })
}

export function apiErrorCodes() {
  const codes = new Set(CLIENT_CODES)
  for (const dir of SOURCES) {
    for (const file of pythonFiles(join(ROOT, dir))) {
      const text = readFileSync(file, 'utf8')
      for (const pattern of PATTERNS) {
        for (const match of text.matchAll(pattern)) codes.add(match[1])
      }
    }
  }
  return [...codes].sort()
}

describe('error codes', () => {
  const codes = apiErrorCodes()

  it('finds the codes the API raises', () => {
    // A sample the walk must see, from classes, raises and the fallbacks.
    for (const code of ['not_an_image', 'image_not_cached', 'selection_expired', 'invalid_request',
      'internal_error', 'rate_limited', 'overloaded', 'http_error']) {
      expect(codes).toContain(code)
    }
    expect(codes.length).toBeGreaterThan(50)
  })

  for (const locale of Object.keys(messages)) {
    it(`has a ${locale} sentence for every one`, () => {
      const missing = codes.filter((code) => typeof messages[locale].errors[code] !== 'string')
      expect(missing).toEqual([])
    })
  }
})
