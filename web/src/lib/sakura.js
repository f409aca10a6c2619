// Falling cherry blossom petals: plain state plus a step function, so the physics is
// testable without a canvas. Positions in CSS pixels, speeds in pixels per 60 Hz frame.

export function makePetal(width, height, fallSpeed, rand = Math.random, anywhere = true) {
  return {
    x: rand() * width,
    y: anywhere ? rand() * height : -20 - rand() * 40,
    size: 8 + rand() * 10,
    vy: fallSpeed * (0.6 + rand() * 0.8),
    vx: 0.3 + rand() * 0.6,
    angle: rand() * Math.PI * 2,
    spin: (rand() - 0.5) * 0.04,
    sway: rand() * Math.PI * 2,
    opacity: 0.55 + rand() * 0.4,
  }
}

/** Advances petals by dt frames (1 = 1/60 s); petals leaving the view re-enter at the top. */
export function stepPetals(petals, width, height, fallSpeed, dt, rand = Math.random) {
  for (let i = 0; i < petals.length; i += 1) {
    const p = petals[i]
    p.sway += 0.02 * dt
    p.x += (p.vx + Math.sin(p.sway) * 0.6) * dt
    p.y += p.vy * dt
    p.angle += p.spin * dt
    if (p.y > height + 20 || p.x > width + 20) {
      petals[i] = makePetal(width, height, fallSpeed, rand, false)
      petals[i].x = rand() * width * 1.1 - width * 0.1
    }
  }
  return petals
}

/** One petal drawn once into a small canvas; every frame then only blits this sprite. */
export function petalSprite(size = 32) {
  const canvas = document.createElement('canvas')
  canvas.width = size
  canvas.height = size
  const ctx = canvas.getContext('2d')
  if (!ctx) return null
  const r = size / 2
  const grad = ctx.createRadialGradient(r, r * 0.8, 1, r, r, r)
  grad.addColorStop(0, '#fff0f5')
  grad.addColorStop(1, '#f4a6c0')
  ctx.fillStyle = grad
  ctx.beginPath()
  // A petal: two curves meeting at the stem, with a small notch at the tip.
  ctx.moveTo(r, size * 0.95)
  ctx.bezierCurveTo(size * 0.05, size * 0.7, size * 0.1, size * 0.15, r * 0.85, size * 0.08)
  ctx.lineTo(r, size * 0.18)
  ctx.lineTo(r * 1.15, size * 0.08)
  ctx.bezierCurveTo(size * 0.9, size * 0.15, size * 0.95, size * 0.7, r, size * 0.95)
  ctx.fill()
  return canvas
}
