import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import UploadList from '../src/components/UploadList.vue'
import { batchFiles, splitProgress } from '../src/api/upload.js'

describe('splitProgress', () => {
  it('fills files in body order', () => {
    // 3 files of 100, 200, 100 bytes; 40 bytes of multipart overhead in total.
    const sizes = [100, 200, 100]
    expect(splitProgress(sizes, 0, 440)).toEqual([0, 0, 0])
    const mid = splitProgress(sizes, 160, 440)
    expect(mid[0]).toBe(1)
    // Each file carries a third of the overhead: file 1 spans 340/3..1000/3 of the body.
    expect(mid[1]).toBeCloseTo((160 - 340 / 3) / (200 + 40 / 3))
    expect(mid[2]).toBe(0)
    expect(splitProgress(sizes, 440, 440)).toEqual([1, 1, 1])
  })
})

describe('batchFiles', () => {
  const f = (size) => ({ size })
  it('respects the file count and byte limits', () => {
    const files = [f(10), f(10), f(10), f(10), f(10)]
    expect(batchFiles(files, 2, 1000).map((b) => b.length)).toEqual([2, 2, 1])
    expect(batchFiles(files, 10, 25).map((b) => b.length)).toEqual([2, 2, 1])
  })
  it('gives a file larger than the byte limit its own batch', () => {
    expect(batchFiles([f(5), f(50), f(5)], 10, 20).map((b) => b.length)).toEqual([1, 1, 1])
  })
})

describe('UploadList', () => {
  it('shows one bar per file and a byte-weighted overall bar', () => {
    const items = [
      { name: 'a.jpg', size: 3000, progress: 1, status: 'done' },
      { name: 'b.png', size: 1000, progress: 0, status: 'uploading' },
      { name: 'c.txt', size: 0, progress: 1, status: 'error', error: 'unsupported_image: no' },
      { name: 'd.jpg', size: 0, progress: 1, status: 'done', duplicate: true },
    ]
    const wrapper = mount(UploadList, { props: { items } })
    const rows = wrapper.findAll('[data-testid="upload-item"]')
    expect(rows).toHaveLength(4)
    expect(rows[0].find('progress').element.value).toBe(100)
    expect(rows[1].find('progress').element.value).toBe(0)
    expect(rows[2].classes()).toContain('error')
    expect(rows[2].text()).toContain('unsupported_image')
    expect(rows[3].text()).toContain('already in the gallery')
    expect(wrapper.get('[data-testid="upload-overall"]').element.value).toBe(75)
  })

  it('updates as progress arrives', async () => {
    const items = [{ name: 'a.jpg', size: 1000, progress: 0, status: 'uploading' }]
    const wrapper = mount(UploadList, { props: { items } })
    await wrapper.setProps({ items: [{ ...items[0], progress: 0.42 }] })
    expect(wrapper.get('[data-testid="upload-overall"]').element.value).toBe(42)
    expect(wrapper.text()).toContain('42%')
  })
})
