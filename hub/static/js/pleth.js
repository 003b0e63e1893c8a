// The plethysmogram: a scrolling line of the oximeter's 0..255 samples on a <canvas>.

export class PlethChart {
  constructor(canvas, capacity = 600) {
    this.canvas = canvas;
    this.capacity = capacity;
    this.samples = [];
    this.pending = false;
  }

  push(samples) {
    this.samples.push(...samples);
    if (this.samples.length > this.capacity) this.samples.splice(0, this.samples.length - this.capacity);
    this.canvas.dataset.samples = String(this.samples.length);
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => this.draw());
    }
  }

  clear() {
    this.samples = [];
    this.canvas.dataset.samples = "0";
    this.draw();
  }

  draw() {
    this.pending = false;
    const { canvas } = this;
    const context = canvas.getContext("2d");
    const { width, height } = canvas;
    const style = getComputedStyle(canvas);
    context.clearRect(0, 0, width, height);
    context.strokeStyle = style.getPropertyValue("--grid").trim() || "#ddd";
    context.lineWidth = 1;
    for (let y = 0; y <= 4; y++) {
      context.beginPath();
      context.moveTo(0, (y * height) / 4);
      context.lineTo(width, (y * height) / 4);
      context.stroke();
    }
    if (this.samples.length < 2) return;
    context.strokeStyle = style.color || "#063";
    context.lineWidth = 2;
    context.beginPath();
    const step = width / (this.capacity - 1);
    const offset = this.capacity - this.samples.length;
    this.samples.forEach((sample, index) => {
      const x = (offset + index) * step;
      const y = height - 4 - (sample / 255) * (height - 8);
      if (index === 0) context.moveTo(x, y);
      else context.lineTo(x, y);
    });
    context.stroke();
  }
}
