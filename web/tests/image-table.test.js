import { describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'

vi.mock('../src/api/client.js', async (importOriginal) => {
  const actual = await importOriginal()
  return { ...actual, api: { images: vi.fn(async () => ({ images: [], total: 0 })) } }
})

const { configState } = await import('../src/stores/config.js')
const { default: ImageTable } = await import('../src/components/ImageTable.vue')

describe('ImageTable', () => {
  it('offers the statuses the server names in /config, and no others', async () => {
    configState.config.image_statuses = ['pending', 'indexed', 'quarantined']
    const wrapper = mount(ImageTable)
    await flushPromises()
    const options = wrapper.findAll('select')[0].findAll('option').map((o) => o.element.value)
    expect(options).toEqual(['', 'pending', 'indexed', 'quarantined'])
  })
})
