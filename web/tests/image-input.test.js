import { afterEach, describe, expect, it, vi } from 'vitest'
import { mount } from '@vue/test-utils'
import ImageInput from '../src/components/ImageInput.vue'

function pasteEvent(items, target = document.body) {
  const event = new Event('paste', { bubbles: true, cancelable: true })
  event.clipboardData = { items }
  target.dispatchEvent(event)
  return event
}

describe('ImageInput', () => {
  afterEach(() => {
    vi.unstubAllGlobals()
    document.body.innerHTML = ''
  })

  it('takes an image pasted anywhere on the page (Ctrl+V)', () => {
    const wrapper = mount(ImageInput, { attachTo: document.body })
    const file = new File([new Uint8Array([1])], 'clip.png', { type: 'image/png' })
    const event = pasteEvent([
      { kind: 'string', type: 'text/plain', getAsFile: () => null },
      { kind: 'file', type: 'image/png', getAsFile: () => file },
    ])
    expect(event.defaultPrevented).toBe(true)
    const emitted = wrapper.emitted('image')
    expect(emitted[0][0]).toBe(file)
    wrapper.unmount()
    // Unmounted: the page-wide listener is gone.
    const later = pasteEvent([{ kind: 'file', type: 'image/png', getAsFile: () => file }])
    expect(later.defaultPrevented).toBe(false)
    expect(emitted).toHaveLength(1)
  })

  it('leaves a paste into a text field alone', () => {
    const wrapper = mount(ImageInput, { attachTo: document.body })
    const input = wrapper.get('#image-url').element
    const file = new File([new Uint8Array([1])], 'clip.png', { type: 'image/png' })
    pasteEvent([{ kind: 'file', type: 'image/png', getAsFile: () => file }], input)
    expect(wrapper.emitted('image')).toBeUndefined()
    wrapper.unmount()
  })

  it('hands a dropped file on and shows the error it gets back', async () => {
    const wrapper = mount(ImageInput)
    const text = new File(['hello'], 'notes.jpg', { type: 'image/jpeg' })
    await wrapper.get('[data-testid="dropzone"]').trigger('drop', { dataTransfer: { files: [text] } })
    expect(wrapper.emitted('image')[0][0]).toBe(text)
    await wrapper.setProps({ error: 'That file is not an image.' })
    expect(wrapper.get('[role="alert"]').text()).toBe('That file is not an image.')
  })

  it('keeps the hidden file input out of the Tab order', () => {
    const wrapper = mount(ImageInput)
    expect(wrapper.get('[data-testid="file-input"]').attributes('tabindex')).toBe('-1')
  })

  it('fetches an image URL in the browser and hands it on as a file', async () => {
    const blob = new Blob([new Uint8Array([137, 80])], { type: 'image/jpeg' })
    const fetchMock = vi.fn(async () => new Response(blob, { status: 200 }))
    vi.stubGlobal('fetch', fetchMock)
    const wrapper = mount(ImageInput)
    await wrapper.get('#image-url').setValue('https://example.org/pics/cat%20one.jpg')
    await wrapper.get('form').trigger('submit')
    await vi.waitFor(() => expect(wrapper.emitted('image')).toBeTruthy())
    const file = wrapper.emitted('image')[0][0]
    expect(file.name).toBe('cat one.jpg')
    expect(file.type).toBe('image/jpeg')
    expect(fetchMock.mock.calls[0][1]).toMatchObject({ mode: 'cors', credentials: 'omit' })
  })

  it('says so when the URL cannot be fetched', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => {
      throw new TypeError('CORS')
    }))
    const wrapper = mount(ImageInput)
    await wrapper.get('#image-url').setValue('https://example.org/x.jpg')
    await wrapper.get('form').trigger('submit')
    await vi.waitFor(() => expect(wrapper.find('[role="alert"]').exists()).toBe(true))
    expect(wrapper.emitted('image')).toBeUndefined()
  })
})
