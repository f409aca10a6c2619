import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { mount } from '@vue/test-utils'
import { nextTick } from 'vue'
import SakuraEffect from '../src/components/SakuraEffect.vue'
import { makePetal, stepPetals } from '../src/lib/sakura.js'

function mockMotion(reduce) {
  const listeners = []
  const query = {
    matches: reduce,
    addEventListener: (_, fn) => listeners.push(fn),
    removeEventListener: () => {},
  }
  vi.stubGlobal('matchMedia', vi.fn(() => query))
  window.matchMedia = globalThis.matchMedia
  return (value) => {
    query.matches = value
    listeners.forEach((fn) => fn({ matches: value }))
  }
}

async function settle() {
  await nextTick()
  await Promise.resolve()
  await nextTick()
}

describe('SakuraEffect', () => {
  let raf
  beforeEach(() => {
    raf = vi.fn(() => 7)
    vi.stubGlobal('requestAnimationFrame', raf)
    vi.stubGlobal('cancelAnimationFrame', vi.fn())
  })
  afterEach(() => {
    vi.unstubAllGlobals()
  })

  it('draws on a canvas and animates when enabled', async () => {
    mockMotion(false)
    const wrapper = mount(SakuraEffect, { props: { enabled: true, count: 12, fallSpeed: 1 } })
    await settle()
    expect(wrapper.find('canvas.sakura-canvas').exists()).toBe(true)
    expect(raf).toHaveBeenCalled()
    wrapper.unmount()
  })

  it('renders nothing and schedules no frames when switched off', async () => {
    mockMotion(false)
    const wrapper = mount(SakuraEffect, { props: { enabled: false } })
    await settle()
    expect(wrapper.find('canvas').exists()).toBe(false)
    expect(raf).not.toHaveBeenCalled()
    await wrapper.setProps({ enabled: true })
    await settle()
    expect(wrapper.find('canvas').exists()).toBe(true)
    await wrapper.setProps({ enabled: false })
    await settle()
    expect(wrapper.find('canvas').exists()).toBe(false)
    wrapper.unmount()
  })

  it('stays off when the user prefers reduced motion, and follows a change', async () => {
    const setReduce = mockMotion(true)
    const wrapper = mount(SakuraEffect, { props: { enabled: true } })
    await settle()
    expect(wrapper.find('canvas').exists()).toBe(false)
    expect(raf).not.toHaveBeenCalled()
    setReduce(false)
    await settle()
    expect(wrapper.find('canvas').exists()).toBe(true)
    setReduce(true)
    await settle()
    expect(wrapper.find('canvas').exists()).toBe(false)
    wrapper.unmount()
  })

  it('pauses while the tab is hidden and resumes when visible', async () => {
    mockMotion(false)
    let state = 'visible'
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state })
    const wrapper = mount(SakuraEffect, { props: { enabled: true } })
    await settle()
    expect(raf).toHaveBeenCalledTimes(1)
    state = 'hidden'
    document.dispatchEvent(new Event('visibilitychange'))
    expect(cancelAnimationFrame).toHaveBeenCalledWith(7)
    expect(wrapper.vm.running()).toBe(false)
    state = 'visible'
    document.dispatchEvent(new Event('visibilitychange'))
    expect(raf).toHaveBeenCalledTimes(2)
    wrapper.unmount()
    delete document.visibilityState
  })
})

describe('petal physics', () => {
  it('moves petals down and recycles those that left the view at the top', () => {
    let seed = 1
    const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647)
    const petals = Array.from({ length: 30 }, () => makePetal(400, 300, 1.5, rand))
    const before = petals.map((p) => p.y)
    stepPetals(petals, 400, 300, 1.5, 1, rand)
    petals.forEach((p, i) => expect(p.y).toBeGreaterThan(before[i]))
    for (let i = 0; i < 1000; i += 1) stepPetals(petals, 400, 300, 1.5, 1, rand)
    petals.forEach((p) => {
      expect(p.y).toBeLessThanOrEqual(320 + 10)
      expect(Number.isFinite(p.x)).toBe(true)
    })
    expect(petals).toHaveLength(30)
  })
})
