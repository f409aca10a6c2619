import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import ResultsGrid from '../src/components/ResultsGrid.vue'

const results = [
  {
    id: 11, score: 0.91234, thumbnail_url: '/api/v1/images/11/thumbnail',
    file_url: '/api/v1/images/11/file', original_filename: 'cat.jpg', tags: ['cat', 'pet'],
  },
  { id: 12, score: 0.5, thumbnail_url: null, original_filename: 'dog.png', tags: [] },
]

describe('ResultsGrid', () => {
  it('renders thumbnails, scores, file names and tags in rank order', () => {
    const wrapper = mount(ResultsGrid, { props: { results, total: 7, searched: true } })
    const cards = wrapper.findAll('[data-testid="result"]')
    expect(cards).toHaveLength(2)
    expect(cards[0].get('img').attributes('src')).toBe('/api/v1/images/11/thumbnail')
    // No thumbnail URL: the thumbnail route by id.
    expect(cards[1].get('img').attributes('src')).toBe('/api/v1/images/12/thumbnail')
    expect(cards[0].get('[data-testid="result-score"]').text()).toBe('0.912')
    expect(cards[0].text()).toContain('cat.jpg')
    expect(cards[0].get('.tags').text()).toBe('cat · pet')
    expect(wrapper.get('[data-testid="result-count"]').text()).toBe('7 results')
  })

  it('says "at least" when the total is not exact, and tells an empty gallery apart', async () => {
    const wrapper = mount(ResultsGrid, {
      props: { results, total: 30, totalExact: false, searched: true },
      global: { stubs: { RouterLink: { template: '<a><slot /></a>' } } },
    })
    expect(wrapper.get('[data-testid="result-count"]').text()).toBe('At least 30 results')
    await wrapper.setProps({ results: [], total: 0, galleryEmpty: true })
    expect(wrapper.find('[data-testid="no-results"]').exists()).toBe(false)
    expect(wrapper.get('[data-testid="gallery-empty"]').text()).toContain(
      'The gallery is empty: upload images in Admin.',
    )
  })

  it('emits open, more-like-this and load-more', async () => {
    const wrapper = mount(ResultsGrid, {
      props: { results, total: 7, searched: true, hasMore: true },
    })
    await wrapper.findAll('button.thumb')[1].trigger('click')
    await wrapper.findAll('[data-testid="more-like-this"]')[0].trigger('click')
    await wrapper.get('[data-testid="load-more"]').trigger('click')
    expect(wrapper.emitted('open')[0]).toEqual([1])
    expect(wrapper.emitted('more-like-this')[0][0].id).toBe(11)
    expect(wrapper.emitted('load-more')).toHaveLength(1)
  })

  it('says so when a search found nothing', () => {
    const wrapper = mount(ResultsGrid, { props: { results: [], total: 0, searched: true } })
    expect(wrapper.find('[data-testid="no-results"]').exists()).toBe(true)
    expect(wrapper.find('[data-testid="load-more"]').exists()).toBe(false)
  })
})

describe('LightboxView', async () => {
  const { default: LightboxView } = await import('../src/components/LightboxView.vue')

  it('steps with the arrow keys, keeps Tab inside and closes on Escape', async () => {
    const wrapper = mount(LightboxView, {
      props: { results, index: 0, query: null },
      attachTo: document.body,
    })
    // Teleported into <body>, above the sticky header.
    const image = () => document.querySelector('[data-testid="lightbox-image"]')
    expect(image().parentElement.closest('body')).toBe(document.body)
    expect(image().getAttribute('src')).toBe('/api/v1/images/11/file')
    document.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowRight' }))
    expect(wrapper.emitted('update:index')[0]).toEqual([1])
    await wrapper.setProps({ index: 1 })
    // No file URL: the file route by id.
    expect(image().getAttribute('src')).toBe('/api/v1/images/12/file')
    const buttons = [...document.querySelectorAll('[data-testid="lightbox"] button')].filter(
      (b) => !b.disabled,
    )
    buttons.at(-1).focus()
    const tab = new KeyboardEvent('keydown', { key: 'Tab', cancelable: true })
    document.dispatchEvent(tab)
    expect(tab.defaultPrevented).toBe(true)
    expect(document.activeElement).toBe(buttons[0])
    document.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape' }))
    expect(wrapper.emitted('close')).toHaveLength(1)
    wrapper.unmount()
  })
})

describe('ResultsGrid infinite scroll', () => {
  it('asks for the next page while the end of the grid is in view', async () => {
    const observers = []
    class FakeObserver {
      constructor(callback) {
        this.callback = callback
        this.disconnected = false
        observers.push(this)
      }
      observe() {}
      disconnect() {
        this.disconnected = true
      }
    }
    const { vi } = await import('vitest')
    vi.stubGlobal('IntersectionObserver', FakeObserver)
    const wrapper = mount(ResultsGrid, {
      props: { results: results.slice(0, 1), total: 2, searched: true, hasMore: true },
    })
    const seen = () => observers.at(-1).callback([{ isIntersecting: true }])
    seen()
    expect(wrapper.emitted('load-more')).toHaveLength(1)
    await wrapper.setProps({ loading: true })
    seen()
    expect(wrapper.emitted('load-more')).toHaveLength(1)
    const before = observers.length
    await wrapper.setProps({ loading: false, results, hasMore: false })
    // A fresh observer after each page, the old one dropped.
    expect(observers.length).toBeGreaterThan(before)
    expect(observers[before - 1].disconnected).toBe(true)
    seen()
    expect(wrapper.emitted('load-more')).toHaveLength(1)
    vi.unstubAllGlobals()
  })
})
