import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'

vi.mock('../src/api/client.js', async (importOriginal) => {
  const actual = await importOriginal()
  return { ...actual, api: { segment: vi.fn(), prepare: vi.fn() } }
})

const { api, ApiError } = await import('../src/api/client.js')
const { default: ObjectSelector } = await import('../src/components/ObjectSelector.vue')

function pointer(type, x, y, extra = {}) {
  const event = new MouseEvent(type, { clientX: x, clientY: y, bubbles: true, ...extra })
  event.pointerId = 1
  event.pointerType = 'mouse'
  return event
}

/** The selector over a 640x480 image shown at 320x240 (so image pixels = 2 x screen). */
function mountShown(props = {}) {
  const wrapper = mount(ObjectSelector, {
    props: { src: 'blob:query', file: new Blob(['x']), ...props },
    attachTo: document.body,
  })
  const img = wrapper.get('img').element
  Object.defineProperty(img, 'naturalWidth', { value: 640 })
  Object.defineProperty(img, 'naturalHeight', { value: 480 })
  const overlay = wrapper.get('[data-testid="segment-overlay"]').element
  overlay.getBoundingClientRect = () => ({ left: 10, top: 20, width: 320, height: 240 })
  return { wrapper, overlay }
}

const SHA = 'ab'.repeat(32)

/** An answer as the server gives it for outputs=rle (a 640x480 mask). */
function answer(extra = {}) {
  return {
    score: 0.9,
    mask_png_b64: null,
    mask_rle: { size: [480, 640], counts: [1000, 5000, 301200] },
    low_res_mask_b64: null,
    selection_id: 'SEL',
    image_sha256: SHA,
    ...extra,
  }
}

function click(overlay, x, y, extra = {}) {
  overlay.dispatchEvent(pointer('pointerdown', x, y, { button: 0, ...extra }))
  overlay.dispatchEvent(pointer('pointerup', x, y, { button: 0, ...extra }))
}

describe('ObjectSelector', () => {
  beforeEach(() => {
    // Unless a test says otherwise, encoding ahead fails: clicks then send the image.
    api.prepare.mockRejectedValue(new ApiError(503, 'unavailable', 'down'))
  })
  afterEach(() => {
    vi.resetAllMocks()
    document.body.innerHTML = ''
  })

  it('sends clicks as prompts in image pixels; Alt+click and right-click exclude', async () => {
    api.segment.mockRejectedValue(new ApiError(503, 'segmentation_unavailable', 'down'))
    const { wrapper, overlay } = mountShown()
    click(overlay, 10 + 100, 20 + 50)
    await flushPromises()
    expect(api.segment).toHaveBeenCalledTimes(1)
    expect(api.segment.mock.calls[0][0].prompts).toEqual({ points: [{ x: 200, y: 100, label: 1 }] })

    click(overlay, 10 + 10, 20 + 10, { altKey: true })
    overlay.dispatchEvent(pointer('pointerdown', 30, 40, { button: 2 }))
    overlay.dispatchEvent(pointer('pointerup', 30, 40, { button: 2 }))
    await flushPromises()
    const last = api.segment.mock.calls.at(-1)[0].prompts.points
    expect(last.map((p) => p.label)).toEqual([1, 0, 0])
    expect(last[2]).toEqual({ x: 40, y: 40, label: 0 })
    // The server's error is shown, and the selection stays for another try.
    expect(wrapper.get('[role="alert"]').text()).toBe('down')
    wrapper.unmount()
  })

  it('turns a drag into a box and emits the search with the chosen mode', async () => {
    api.segment.mockResolvedValue(answer({ selection_id: undefined }))
    const { wrapper, overlay } = mountShown({ file: null, imageId: 7 })
    overlay.dispatchEvent(pointer('pointerdown', 10 + 20, 20 + 30, { button: 0 }))
    overlay.dispatchEvent(pointer('pointermove', 10 + 80, 20 + 60))
    overlay.dispatchEvent(pointer('pointermove', 10 + 160, 20 + 120))
    overlay.dispatchEvent(pointer('pointerup', 10 + 160, 20 + 120, { button: 0 }))
    await flushPromises()
    const sent = api.segment.mock.calls[0][0]
    expect(sent.imageId).toBe(7)
    expect(sent.file).toBe(null)
    expect(sent.prompts).toEqual({ points: [], box: [40, 60, 320, 240] })

    await wrapper.get('[data-testid="region-mode"]').setValue('pool')
    await wrapper.get('[data-testid="search-object"]').trigger('click')
    expect(wrapper.emitted('search')[0][0]).toEqual({
      prompts: { points: [], box: [40, 60, 320, 240] },
      mode: 'pool',
    })
    wrapper.unmount()
  })

  it('is usable from the keyboard', async () => {
    api.segment.mockRejectedValue(new ApiError(500, 'x', 'y'))
    const { wrapper } = mountShown()
    const canvas = wrapper.get('[data-testid="segment-overlay"]')
    await canvas.trigger('keydown', { key: 'ArrowRight' })
    await canvas.trigger('keydown', { key: 'Enter' })
    await canvas.trigger('keydown', { key: 'ArrowUp', shiftKey: true })
    await canvas.trigger('keydown', { key: 'x' })
    const points = api.segment.mock.calls.at(-1)[0].prompts.points
    // Starts in the centre (320, 240); steps are 2% (10 px) or 10% (48 px) of the short side.
    expect(points).toEqual([
      { x: 330, y: 240, label: 1 },
      { x: 330, y: 192, label: 0 },
    ])
    await canvas.trigger('keydown', { key: 'Escape' })
    expect(wrapper.vm.state.points).toEqual([])
    expect(wrapper.get('[data-testid="search-object"]').attributes('disabled')).toBeDefined()
    wrapper.unmount()
  })

  it('names the previous answer\'s selection with the next click, until reset', async () => {
    let answers = 0
    api.segment.mockImplementation(async () => {
      answers += 1
      return answer({ selection_id: `SEL${answers}` })
    })
    const { wrapper, overlay } = mountShown()
    click(overlay, 10 + 100, 20 + 50)
    await flushPromises()
    expect(api.segment.mock.calls[0][0].prompts).toEqual({ points: [{ x: 200, y: 100, label: 1 }] })
    click(overlay, 10 + 20, 20 + 20, { altKey: true })
    await flushPromises()
    const second = api.segment.mock.calls[1][0].prompts
    expect(second.selection_id).toBe('SEL1')
    expect(second.mask_input_b64).toBeUndefined()
    expect(second.points).toHaveLength(2)
    // A later click is a few hundred bytes, not the 350 kB of a low-res mask.
    expect(JSON.stringify(api.segment.mock.calls[1][0]).length).toBeLessThan(1000)
    // The search uses the mask on screen: the same prompts, the latest selection.
    await wrapper.get('[data-testid="search-object"]').trigger('click')
    expect(wrapper.emitted('search')[0][0].prompts.selection_id).toBe('SEL2')
    // After a reset, the next click starts a new mask.
    await wrapper.get('[data-testid="segment-overlay"]').trigger('keydown', { key: 'Escape' })
    click(overlay, 10 + 100, 20 + 50)
    await flushPromises()
    expect(api.segment.mock.calls.at(-1)[0].prompts).toEqual({ points: [{ x: 200, y: 100, label: 1 }] })
    wrapper.unmount()
  })

  it('encodes the image as it is chosen; a click made meanwhile waits and sends no image', async () => {
    const file = new Blob(['image bytes'])
    let ready
    api.prepare.mockReturnValue(new Promise((resolve) => (ready = resolve)))
    api.segment.mockResolvedValue(answer())
    const { wrapper, overlay } = mountShown({ file })
    expect(api.prepare).toHaveBeenCalledWith({ file, imageId: null })
    await flushPromises()
    expect(wrapper.find('[data-testid="segment-preparing"]').exists()).toBe(true)
    click(overlay, 10 + 100, 20 + 50)
    await flushPromises()
    expect(api.segment).not.toHaveBeenCalled()
    expect(wrapper.get('[data-testid="search-object"]').attributes('disabled')).toBeDefined()
    ready({ image_sha256: SHA })
    await flushPromises()
    expect(wrapper.emitted('prepared')[0]).toEqual([SHA])
    expect(wrapper.find('[data-testid="segment-preparing"]').exists()).toBe(false)
    expect(api.segment).toHaveBeenCalledTimes(1)
    expect(api.segment.mock.calls[0][0]).toEqual({
      imageSha256: SHA,
      prompts: { points: [{ x: 200, y: 100, label: 1 }] },
      outputs: 'rle',
    })
    expect(wrapper.get('[data-testid="search-object"]').attributes('disabled')).toBeUndefined()
    wrapper.unmount()
  })

  it('resends the image when the server lost it, and the clicks without a lost selection', async () => {
    const file = new Blob(['image bytes'])
    api.prepare.mockResolvedValue({ image_sha256: SHA })
    api.segment
      .mockResolvedValueOnce(answer())
      .mockRejectedValueOnce(new ApiError(409, 'image_not_cached', 'send the image again'))
      .mockResolvedValueOnce(answer({ selection_id: 'SEL2' }))
      .mockRejectedValueOnce(new ApiError(409, 'selection_expired', 'not held'))
      .mockResolvedValueOnce(answer())
      .mockResolvedValueOnce(answer())
    const { wrapper, overlay } = mountShown({ file })
    await flushPromises()
    click(overlay, 10 + 100, 20 + 50)
    await flushPromises()
    expect(api.segment.mock.calls[0][0].imageSha256).toBe(SHA)

    // The server restarted: 409 image_not_cached, and the same click goes again with the file.
    click(overlay, 10 + 120, 20 + 60)
    await flushPromises()
    const [refused, resent] = api.segment.mock.calls.slice(1, 3).map((call) => call[0])
    expect(refused.imageSha256).toBe(SHA)
    expect(resent.file).toBe(file)
    expect(resent.imageSha256).toBeUndefined()
    expect(resent.prompts).toEqual(refused.prompts)
    expect(wrapper.find('[role="alert"]').exists()).toBe(false)

    // A selection the server let go: the click goes again without it, by hash.
    click(overlay, 10 + 130, 20 + 70)
    await flushPromises()
    const [expired, fresh] = api.segment.mock.calls.slice(3, 5).map((call) => call[0])
    expect(expired.prompts.selection_id).toBe('SEL2')
    expect(fresh.prompts.selection_id).toBeUndefined()
    expect(fresh.imageSha256).toBe(SHA)
    expect(wrapper.find('[role="alert"]').exists()).toBe(false)
    wrapper.unmount()
  })

  it('resends a catalog image by id, once; other errors are shown', async () => {
    const lost = new ApiError(409, 'image_not_cached', 'send the image again')
    api.segment
      .mockResolvedValueOnce(answer())
      .mockRejectedValueOnce(lost)
      .mockRejectedValueOnce(new ApiError(404, 'image_not_found', 'gone'))
    const { wrapper, overlay } = mountShown({ file: null, imageId: 7 })
    click(overlay, 10 + 100, 20 + 50)
    await flushPromises()
    click(overlay, 10 + 120, 20 + 60)
    await flushPromises()
    expect(api.segment).toHaveBeenCalledTimes(3)
    expect(api.segment.mock.calls[1][0].imageSha256).toBe(SHA)
    expect(api.segment.mock.calls[2][0]).toMatchObject({ imageId: 7, file: null })
    expect(wrapper.get('[role="alert"]').text()).toBe('That image is not in the gallery (any more).')
    wrapper.unmount()
  })

  it('forgets the hash when the image changes', async () => {
    api.segment.mockResolvedValue(answer())
    const { wrapper, overlay } = mountShown()
    click(overlay, 10 + 100, 20 + 50)
    await flushPromises()
    const other = new Blob(['another image'])
    await wrapper.setProps({ src: 'blob:other', file: other })
    expect(api.prepare).toHaveBeenLastCalledWith({ file: other, imageId: null })
    click(overlay, 10 + 100, 20 + 50)
    await flushPromises()
    const sent = api.segment.mock.calls.at(-1)[0]
    expect(sent.file).toBe(other)
    expect(sent.imageSha256).toBeUndefined()
    expect(sent.prompts).toEqual({ points: [{ x: 200, y: 100, label: 1 }] })
    wrapper.unmount()
  })

  it('does nothing when segmentation is not available', async () => {
    const { wrapper, overlay } = mountShown({ available: false })
    click(overlay, 50, 50)
    await flushPromises()
    expect(api.segment).not.toHaveBeenCalled()
    expect(api.prepare).not.toHaveBeenCalled()
    expect(wrapper.find('[data-testid="search-object"]').exists()).toBe(false)
    wrapper.unmount()
  })
})
