// voice-sim: the microphone as 16 kHz mono 16-bit PCM, in 20 ms frames.
// Runs on the audio thread. The AudioContext is asked for 16 kHz; where the browser
// runs it at another rate, each output sample is the mean of the input samples it
// covers (a box filter: enough against aliasing for speech at 48 or 44.1 kHz).
const OUT_RATE = 16000;
const FRAME = 320;

class Pcm16Sender extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE;  // input samples per output sample
    this.acc = 0;
    this.accN = 0;
    this.pos = 0;
    this.frame = new Int16Array(FRAME);
    this.n = 0;
    this.peak = 0;
    this.energy = 0;
  }

  push(v) {
    const s = Math.max(-1, Math.min(1, v));
    this.frame[this.n++] = s < 0 ? s * 32768 : s * 32767;
    this.peak = Math.max(this.peak, Math.abs(s));
    this.energy += s * s;
    if (this.n === FRAME) {
      const rms = Math.sqrt(this.energy / FRAME);
      this.port.postMessage({ pcm: this.frame.buffer, peak: this.peak, rms },
                            [this.frame.buffer]);
      this.frame = new Int16Array(FRAME);
      this.n = 0;
      this.peak = 0;
      this.energy = 0;
    }
  }

  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    if (this.step === 1) {
      for (let i = 0; i < ch.length; i++) this.push(ch[i]);
      return true;
    }
    for (let i = 0; i < ch.length; i++) {
      this.acc += ch[i];
      this.accN += 1;
      this.pos += 1;
      if (this.pos >= this.step) {
        this.push(this.acc / this.accN);
        this.pos -= this.step;
        this.acc = 0;
        this.accN = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm16-sender", Pcm16Sender);
