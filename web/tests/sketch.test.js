import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import SketchBoard from '../src/components/SketchBoard.vue'
import { Sketch } from '../src/lib/sketch.js'

function pointer(type, x, y) {
  const event = new MouseEvent(type, { clientX: x, clientY: y, bubbles: true, button: 0 })
  event.pointerId = 1
  return event
}

async function draw(canvas, points) {
  const [first, ...rest] = points
  await canvas.element.dispatchEvent(pointer('pointerdown', ...first))
  for (const p of rest) canvas.element.dispatchEvent(pointer('pointermove', ...p))
  canvas.element.dispatchEvent(pointer('pointerup', ...points[points.length - 1]))
}

describe('Sketch model', () => {
  it('undo drops the last stroke and clear drops all', () => {
    const s = new Sketch()
    expect(s.isEmpty).toBe(true)
    s.begin(1, 1)
    s.extend(5, 5)
    s.end()
    s.begin(10, 10, { tool: 'eraser', size: 20 })
    s.end()
    expect(s.strokes).toHaveLength(2)
    expect(s.isEmpty).toBe(false)
    expect(s.undo().tool).toBe('eraser')
    expect(s.strokes).toHaveLength(1)
    s.clear()
    expect(s.strokes).toHaveLength(0)
    expect(s.undo()).toBe(null)
  })

  it('an eraser-only drawing counts as empty', () => {
    const s = new Sketch()
    s.begin(3, 3, { tool: 'eraser' })
    s.end()
    expect(s.isEmpty).toBe(true)
  })
})

describe('SketchBoard', () => {
  it('records strokes from pointer events, undoes and clears through its buttons', async () => {
    const wrapper = mount(SketchBoard, { props: { width: 100, height: 100 } })
    const canvas = wrapper.get('[data-testid="sketch-canvas"]')
    const undo = wrapper.get('[data-testid="sketch-undo"]')
    const clear = wrapper.get('[data-testid="sketch-clear"]')
    expect(undo.attributes('disabled')).toBeDefined()

    await draw(canvas, [[10, 10], [20, 20], [30, 25]])
    await draw(canvas, [[50, 50], [60, 70]])
    await wrapper.vm.$nextTick()
    expect(wrapper.vm.sketch.strokes).toHaveLength(2)
    expect(wrapper.vm.sketch.strokes[0].points).toHaveLength(3)
    expect(undo.attributes('disabled')).toBeUndefined()

    await undo.trigger('click')
    expect(wrapper.vm.sketch.strokes).toHaveLength(1)
    expect(wrapper.vm.state.strokes).toBe(1)

    await wrapper.get('[data-testid="sketch-eraser"]').trigger('click')
    await draw(canvas, [[5, 5], [6, 6]])
    expect(wrapper.vm.sketch.strokes[1].tool).toBe('eraser')

    await clear.trigger('click')
    expect(wrapper.vm.sketch.strokes).toHaveLength(0)
    expect(wrapper.vm.state.empty).toBe(true)
    expect(wrapper.emitted('change').at(-1)[0]).toEqual({ strokes: 0, empty: true })
    expect(undo.attributes('disabled')).toBeDefined()
  })

  it('Ctrl+Z undoes the last stroke wherever the focus is, except in a text field', async () => {
    const wrapper = mount(SketchBoard, { attachTo: document.body })
    const canvas = wrapper.get('[data-testid="sketch-canvas"]')
    await draw(canvas, [[10, 10], [20, 20]])
    await draw(canvas, [[30, 30], [40, 40]])
    await canvas.trigger('keydown', { key: 'z', ctrlKey: true })
    expect(wrapper.vm.sketch.strokes).toHaveLength(1)
    // The focus left the canvas (a mouse user never tabbed to it): still undone.
    document.body.dispatchEvent(new KeyboardEvent('keydown', { key: 'z', ctrlKey: true, bubbles: true }))
    expect(wrapper.vm.sketch.strokes).toHaveLength(0)
    await draw(canvas, [[10, 10], [20, 20]])
    const field = document.createElement('input')
    document.body.appendChild(field)
    field.dispatchEvent(new KeyboardEvent('keydown', { key: 'z', ctrlKey: true, bubbles: true }))
    expect(wrapper.vm.sketch.strokes).toHaveLength(1)
    wrapper.unmount()
  })
})
