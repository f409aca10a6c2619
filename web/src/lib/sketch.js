// The sketch as a list of strokes (not pixels), so undo is dropping the last stroke and the
// canvas can be redrawn at any size. Points are in canvas pixels.

export class Sketch {
  constructor() {
    this.strokes = []
    this.current = null
  }

  get isEmpty() {
    return this.strokes.every((s) => s.tool === 'eraser')
  }

  get canUndo() {
    return this.strokes.length > 0
  }

  begin(x, y, { tool = 'pen', size = 6, color = '#111' } = {}) {
    this.current = { tool, size, color, points: [[x, y]] }
    this.strokes.push(this.current)
    return this.current
  }

  extend(x, y) {
    if (!this.current) return null
    this.current.points.push([x, y])
    return this.current
  }

  end() {
    this.current = null
  }

  undo() {
    this.current = null
    return this.strokes.pop() || null
  }

  clear() {
    this.current = null
    this.strokes = []
  }
}

/** Draws one stroke; the eraser paints the background colour (the PNG has no alpha). */
export function drawStroke(ctx, stroke, background = '#fff') {
  const pts = stroke.points
  ctx.strokeStyle = stroke.tool === 'eraser' ? background : stroke.color
  ctx.fillStyle = ctx.strokeStyle
  ctx.lineWidth = stroke.size
  ctx.lineCap = 'round'
  ctx.lineJoin = 'round'
  if (pts.length === 1) {
    ctx.beginPath()
    ctx.arc(pts[0][0], pts[0][1], stroke.size / 2, 0, Math.PI * 2)
    ctx.fill()
    return
  }
  ctx.beginPath()
  ctx.moveTo(pts[0][0], pts[0][1])
  for (let i = 1; i < pts.length; i += 1) ctx.lineTo(pts[i][0], pts[i][1])
  ctx.stroke()
}

export function render(ctx, sketch, width, height, background = '#fff') {
  ctx.fillStyle = background
  ctx.fillRect(0, 0, width, height)
  for (const stroke of sketch.strokes) drawStroke(ctx, stroke, background)
}
