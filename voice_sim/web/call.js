// voice-sim call page: before the call (calm reading, level check) and the call.
// The microphone goes to the server as 16 kHz 16-bit PCM over the page's WebSocket
// (mic-worklet.js); the server runs the call and sends the customer's lines as WAV
// bytes, which play here. window.voiceSim keeps what happened, with timestamps in
// epoch milliseconds, for the tests and the benchmark.
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const $ = (id) => document.getElementById(id);
  const now = () => performance.timeOrigin + performance.now();
  const vs = {
    state: "before", sentSamples: 0, frames: [], lines: [], captions: [], turns: [],
    hints: [], levels: [], events: [], heard: [], done: null, error: null, closed: false,
  };
  window.voiceSim = vs;
  let ws = null;
  let wsOpen = null;
  let mic = null;
  let player = null;
  let pendingStart = null;
  const page = $("call-page");

  function setState(s) {
    vs.state = s;
    page.dataset.state = s;
  }

  function say(text) { $("who").textContent = text; }

  function connect() {
    if (wsOpen) return wsOpen;
    wsOpen = new Promise((resolve, reject) => {
      const proto = location.protocol === "https:" ? "wss://" : "ws://";
      ws = new WebSocket(proto + location.host + data.ws);
      ws.binaryType = "arraybuffer";
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error("could not connect to voice-sim"));
      ws.onclose = () => {
        vs.closed = true;
        if (!vs.done) say("Disconnected from voice-sim: what was recorded is saved.");
      };
      ws.onmessage = (ev) => {
        if (typeof ev.data === "string") onEvent(JSON.parse(ev.data));
        else storeClip(ev.data);
      };
    });
    return wsOpen;
  }

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  async function openMic() {
    if (mic) return mic;
    await connect();
    // The raw microphone: the delivery analysis measures loudness and pitch, which the
    // browser's echo canceller, noise suppressor and gain control would all change. The
    // customer's voice leaking back in is cancelled on the server, which knows the line
    // sample by sample (voice_sim.bargein), before it listens for the trainee talking
    // over it.
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false,
               autoGainControl: false },
    });
    let ctx;
    try {
      ctx = new AudioContext({ sampleRate: 16000 });
    } catch (e) {
      ctx = new AudioContext();  // the worklet resamples
    }
    await ctx.audioWorklet.addModule("/static/mic-worklet.js");
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "pcm16-sender");
    const mute = ctx.createGain();
    mute.gain.value = 0;  // pulled by the destination, heard by nobody
    source.connect(node).connect(mute).connect(ctx.destination);
    vs.micStartedAt = now();
    node.port.onmessage = (e) => {
      const n = e.data.pcm.byteLength / 2;
      if (ws.readyState === WebSocket.OPEN) ws.send(e.data.pcm);
      vs.sentSamples += n;
      vs.frames.push([vs.sentSamples, now(), e.data.peak, e.data.rms]);
      meter(e.data.peak);
    };
    await ctx.resume();
    mic = { stream, ctx, node };
    return mic;
  }

  function meter(peak) {
    const db = peak > 0 ? 20 * Math.log10(peak) : -120;
    const w = Math.max(0, Math.min(1, (db + 60) / 60)) * 200;
    $("meter-bar").setAttribute("width", w.toFixed(0));
    $("meter-bar").setAttribute("fill", peak >= 0.99 ? "#dc2626" : "#16a34a");
  }

  function mood(m) {
    $("mood-bar").setAttribute("width", (Math.max(0, Math.min(10, m)) * 20).toFixed(0));
    $("mood-text").textContent = `${m.toFixed(1)} / 10 angry`;
  }

  const clips = new Map();  // key -> Promise<AudioBuffer>, decoded as they arrive

  function storeClip(buf) {
    const key = new TextDecoder().decode(new Uint8Array(buf, 0, 16));
    if (!player) player = new AudioContext();
    clips.set(key, player.decodeAudioData(buf.slice(16)));
  }

  // The line playing: {n, src, t0 (its start on the audio clock), entry}. The server
  // listens while it plays and stops it when the trainee talks over it.
  let current = null;
  const stopped = new Set();  // lines told to stop before they started

  function latency() {
    return (player.baseLatency || 0) + (player.outputLatency || 0);
  }

  async function playLine(key, n) {
    const got = now();
    await player.resume();
    const audio = await clips.get(key);
    if (stopped.has(n)) {  // the trainee talked before it could start
      send({ type: "played", n, played_s: 0, latency_s: latency() });
      return;
    }
    const src = player.createBufferSource();
    src.buffer = audio;
    src.connect(player.destination);
    const entry = { receivedAt: got, startedAt: now(), duration: audio.duration,
                    micSamples: vs.sentSamples, endedAt: null, stoppedAt: null,
                    stopAsked: null, outputLatency: latency() };
    if (vs.lines.length) vs.lines[vs.lines.length - 1].audio = entry;
    const t0 = player.currentTime;
    current = { n, src, t0, entry };
    src.onended = () => {
      entry.endedAt = now();
      entry.contextTime = player.currentTime;
      entry.playedS = Math.min(audio.duration, player.currentTime - t0);
      if (current && current.n === n) current = null;
      send({ type: "played", n, played_s: entry.playedS, latency_s: latency() });
      if (vs.state === "call") say("Your turn: answer now.");
    };
    src.start(t0);
    send({ type: "playing", n, latency_s: latency() });
  }

  function stopLine(n, atS) {
    if (!current || current.n !== n) {
      if (atS === undefined) stopped.add(n);
      return;
    }
    const { src, t0, entry } = current;
    entry.stopAsked = now();
    if (atS === undefined) {
      entry.stoppedAt = now();
      src.stop();
    } else {
      src.stop(Math.max(player.currentTime, t0 + atS));
    }
  }

  function log(cls, text) {
    const li = document.createElement("li");
    li.className = cls;
    li.textContent = text;
    $("log").appendChild(li);
    return li;
  }

  function onEvent(ev) {
    vs.events.push([now(), ev.type]);
    switch (ev.type) {
      case "ready":
        break;
      case "last_baseline_ready":
        vs.lastBaselineReady = true;
        break;
      case "level_check": {
        vs.levels.push(ev);
        const el = $("level-check");
        el.textContent = ev.verdict === "fine" ? `Level fine (peak ${ev.peak_dbfs} dBFS)`
          : `${ev.verdict[0].toUpperCase()}${ev.verdict.slice(1)}: ${ev.advice}`;
        el.className = ev.verdict === "fine" ? "fine" : "bad";
        $("record-baseline").disabled = false;
        if (pendingStart) {
          const go = pendingStart;
          pendingStart = null;
          if (ev.verdict === "fine") go();
          else $("start").disabled = false;
        }
        break;
      }
      case "line":
        vs.lines.push({ at: now(), id: ev.id, text: ev.text, mood: ev.mood });
        $("line").textContent = `${data.customer}: ${ev.text}`;
        $("caption").textContent = "";
        mood(ev.mood);
        say(`${data.customer} is speaking…`);
        log("customer", `${data.customer}: ${ev.text}`);
        break;
      case "play":
        playLine(ev.key, ev.n).catch((e) => console.error("voice-sim: playback:", e.message));
        break;
      case "stop":
        stopLine(ev.n);
        break;
      case "stop_at":
        stopLine(ev.n, ev.at_s);
        break;
      case "gave_way":
        vs.gaveWay = (vs.gaveWay || []).concat([ev]);
        break;
      case "listening":
        break;
      case "caption":
        vs.captions.push([now(), ev.text]);
        $("caption").textContent = ev.text;
        break;
      case "heard":
        vs.heard.push([now(), ev.why || ev.reason]);
        say("Thinking…");
        break;
      case "turn": {
        vs.turns.push(ev);
        mood(ev.mood);
        let shown = log("you", `You: ${ev.transcript || "(nothing heard)"}`);
        // The turn is scored as the customer's reply starts: list the answer before it.
        const items = $("log").children;
        if (vs.lines.length > ev.index && items.length >= 2) {
          $("log").insertBefore(items[items.length - 1], items[items.length - 2]);
        }
        // Talking over the customer, and replies that gave way, under the answer.
        for (const note of ev.turn_taking || []) {
          const li = document.createElement("li");
          li.className = "taking";
          li.textContent = note;
          shown.after(li);
          shown = li;
        }
        break;
      }
      case "hint":
        vs.hints.push(ev.text);
        $("hint").textContent = `Coach: ${ev.text}`;
        $("hint").hidden = false;
        break;
      case "done":
        vs.done = ev;
        setState("done");
        say(`Call over: ${ev.outcome.replace("_", " ")}, score ${ev.score}. Opening the report…`);
        setTimeout(() => { location.href = ev.report; }, 1500);
        break;
      case "error":
        vs.error = ev.message;
        say(`Problem: ${ev.message}`);
        console.error("voice-sim:", ev.message);
        $("start").disabled = false;
        $("record-baseline").disabled = false;
        break;
      default:
        break;
    }
  }

  function choice() {
    return document.querySelector('input[name="baseline"]:checked').value;
  }

  async function recordBaseline(then) {
    $("record-baseline").disabled = true;
    $("level-check").className = "";
    $("level-check").textContent = "Listening: read the sentence aloud…";
    pendingStart = then || null;
    try {
      await openMic();
    } catch (e) {
      micFailed(e);
      return;
    }
    send({ type: "baseline" });
  }

  function micFailed(e) {
    vs.error = `microphone: ${e.message}`;
    $("level-check").textContent = `No microphone: ${e.message}. Allow it and try again.`;
    $("level-check").className = "bad";
    $("record-baseline").disabled = false;
    $("start").disabled = false;
  }

  async function start() {
    $("start").disabled = true;
    if (!player) player = new AudioContext();  // made on the click: allowed to play
    player.resume();
    const c = choice();
    const go = () => {
      $("before").hidden = true;
      $("call").hidden = false;
      setState("call");
      say("Calling…");
      $("end-answer").focus();
      send({ type: "start", baseline: c === "record" ? "recorded" : c,
             coach: $("live-hint").checked ? "live" : "after" });
    };
    if (c === "record" && !vs.levels.some((l) => l.verdict === "fine")) {
      recordBaseline(go);
      return;
    }
    try {
      await openMic();
    } catch (e) {
      micFailed(e);
      return;
    }
    go();
  }

  function endAnswer() {
    if (vs.state === "call") send({ type: "end_answer" });
  }

  function endCall() {
    if (vs.state !== "call") return;
    send({ type: "quit" });
    say("Ending the call…");
  }

  $("record-baseline").addEventListener("click", () => recordBaseline(null));
  $("start").addEventListener("click", start);
  $("end-answer").addEventListener("click", endAnswer);
  $("end-call").addEventListener("click", endCall);
  document.addEventListener("keydown", (e) => {
    if (vs.state !== "call" || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "Escape") {
      e.preventDefault();
      endCall();
    } else if (e.key === "Enter" && e.target.id !== "end-call") {
      e.preventDefault();
      endAnswer();
    } else if (e.key === "h" || e.key === "H") {
      $("hint").hidden = !$("hint").hidden || !$("hint").textContent;
    }
  });
  connect().catch((e) => say(e.message));
})();
