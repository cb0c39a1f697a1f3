// voice-sim trainers page: each line's play button plays it in the customer's voice.
"use strict";
(() => {
  const player = document.getElementById("player");
  let current = null;
  document.querySelectorAll("button.play").forEach((b) => {
    b.addEventListener("click", () => {
      if (current === b && !player.paused) {
        player.pause();
        return;
      }
      current = b;
      player.src = b.dataset.src;
      player.play().catch((e) => console.warn("playback:", e.message));
    });
  });
  player.addEventListener("ended", () => { if (current) current.focus(); });
})();
