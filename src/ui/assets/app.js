// allman's read-only view: local times and the auto-refresh toggle. Nothing else runs here;
// the pages work without it.
"use strict";
(function () {
  // Each <time> shows UTC from the server; show the reader's local time instead (the
  // RFC 3339 value stays in the title, shown on hover).
  for (const el of document.querySelectorAll("time[datetime]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) {
      el.textContent = when.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
    }
  }
  const box = document.getElementById("auto-refresh");
  if (!box || !document.body.dataset.feed) {
    return;
  }
  const KEY = "allman-auto-refresh";
  let on = false;
  try {
    on = window.localStorage.getItem(KEY) === "1";
  } catch (_) {
    on = false;
  }
  box.checked = on;
  let timer = null;
  const arm = function () {
    if (timer) {
      window.clearTimeout(timer);
      timer = null;
    }
    if (box.checked) {
      timer = window.setTimeout(function () { window.location.reload(); }, 5000);
    }
  };
  box.addEventListener("change", function () {
    try {
      window.localStorage.setItem(KEY, box.checked ? "1" : "0");
    } catch (_) {
      // Storage may be off (private windows): the toggle then lasts for this page only.
    }
    arm();
  });
  arm();
})();
