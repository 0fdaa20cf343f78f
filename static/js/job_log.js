// Job page: the log tail follows its newest line, like `tail -f`, unless the reader has
// scrolled up to read; htmx replaces the status card every poll, so the place is carried over.
(function () {
  "use strict";

  const LOG = "job-log";
  let following = true;
  let scrollTop = 0;

  function atBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 8;
  }

  function place() {
    const log = document.getElementById(LOG);
    if (!log) return;
    log.scrollTop = following ? log.scrollHeight : scrollTop;
  }

  document.addEventListener("htmx:beforeSwap", () => {
    const log = document.getElementById(LOG);
    if (!log) return;
    following = atBottom(log);
    scrollTop = log.scrollTop;
  });
  document.addEventListener("htmx:afterSettle", place);
  document.addEventListener("DOMContentLoaded", place);
})();
