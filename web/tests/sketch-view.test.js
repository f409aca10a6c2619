import { describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'

const page = (n, total, exact) => ({
  results: Array.from({ length: n }, (_, i) => ({ id: i + 1, score: 0.9, original_filename: `${i}.jpg` })),
  total,
  total_exact: exact,
  k: 20,
})

vi.mock('vue-router', () => ({ useRouter: () => ({ push: vi.fn() }) }))
vi.mock('../src/api/client.js', () => ({
  api: {
    tags: vi.fn(async () => ({ tags: [] })),
    searchSketch: vi.fn(async () => page(20, 30, false)),
  },
  needsLogin: () => false,
}))

const { api } = await import('../src/api/client.js')
const { default: SketchView } = await import('../src/views/SketchView.vue')

// The board itself is tested in sketch.test.js: here, a drawing that is not empty.
const Board = {
  template: '<div><slot name="actions" /></div>',
  setup(_, { expose }) {
    expose({ state: { empty: false }, toBlob: async () => new Blob(['png'], { type: 'image/png' }) })
  },
}

describe('SketchView', () => {
  it('says "at least" when the server has not counted every match', async () => {
    const wrapper = mount(SketchView, {
      global: { stubs: { SketchBoard: Board, RouterLink: true, LightboxView: true } },
    })
    await wrapper.get('[data-testid="sketch-search"]').trigger('click')
    await flushPromises()
    expect(api.searchSketch).toHaveBeenCalledOnce()
    expect(wrapper.get('[data-testid="result-count"]').text()).toBe('At least 30 results')

    api.searchSketch.mockResolvedValueOnce(page(4, 4, true))
    await wrapper.get('[data-testid="sketch-search"]').trigger('click')
    await flushPromises()
    expect(wrapper.get('[data-testid="result-count"]').text()).toBe('4 results')
  })
})
