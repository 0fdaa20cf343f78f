// The participant's pages: the viewport goes with the consent and each answer; the response
// time runs from the moment the trial's images are all on screen; keys 1-3 and the arrows
// answer; one answer per trial is sent however often a button is pressed.
(function () {
  "use strict";

  function viewport() {
    return window.innerWidth + "x" + window.innerHeight;
  }

  function fillViewport(form) {
    var field = form && form.querySelector('input[name="viewport"]');
    if (field) field.value = viewport();
  }

  var shownAt = null;

  // When a trial was first on screen, kept for the tab's session: a reload shows the same
  // trial again, and its clock must not start over (Date, not performance.now(), which a
  // reload resets).
  function firstShown(form) {
    var key = "trial-shown:" + form.getAttribute("action");
    var trial = form.querySelector('input[name="position"]');
    key += ":" + (trial ? trial.value : "");
    var now = Date.now();
    try {
      var stored = Number(window.sessionStorage.getItem(key));
      if (stored > 0 && stored <= now) return stored;
      window.sessionStorage.setItem(key, String(now));
    } catch (error) {
      // Storage refused (private mode): the clock starts at this display.
    }
    return now;
  }

  function startTrial() {
    var form = document.querySelector("[data-answer-form]");
    if (!form) return;
    fillViewport(form);
    shownAt = null;
    var images = Array.prototype.slice.call(document.querySelectorAll("[data-trial-image]"));
    var waiting = images.filter(function (img) { return !img.complete; }).length;
    function shown() { shownAt = firstShown(form); }
    if (waiting === 0) { shown(); return; }
    images.forEach(function (img) {
      if (img.complete) return;
      var done = function () { waiting -= 1; if (waiting === 0) shown(); };
      img.addEventListener("load", done, { once: true });
      img.addEventListener("error", done, { once: true });
    });
  }

  function markAnswered(form, choice) {
    if (form.dataset.sent) return false;
    form.dataset.sent = choice;
    var elapsed = form.querySelector('input[name="response_ms"]');
    if (elapsed && shownAt !== null) elapsed.value = String(Math.max(0, Date.now() - shownAt));
    fillViewport(form);
    return true;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.matches("[data-viewport-form]")) fillViewport(form);
    if (!form.matches("[data-answer-form]")) return;
    var button = event.submitter;
    if (!markAnswered(form, button ? button.value : "")) {
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }
    // Disabled only after the browser has read the pressed button's value.
    setTimeout(function () { form.classList.add("answered"); }, 0);
  }, true);

  var KEYS = { "1": "left", ArrowLeft: "left", "2": "same", ArrowDown: "same", "3": "right", ArrowRight: "right" };

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    var choice = KEYS[event.key];
    var form = document.querySelector("[data-answer-form]");
    if (!choice || !form || form.dataset.sent) return;
    var button = form.querySelector('button[value="' + choice + '"]');
    if (!button) return;
    event.preventDefault();
    // A click, not requestSubmit: htmx learns which button was pressed from the click, and
    // a button that already has focus (the same key twice) gives it nothing else to go on.
    button.click();
  });

  document.addEventListener("htmx:afterSwap", startTrial);
  document.addEventListener("htmx:responseError", function (event) {
    // The server's message (e.g. a rate limit) replaces the trial; a reload resumes.
    var target = document.getElementById("trial");
    if (target && event.detail.xhr) target.outerHTML = event.detail.xhr.responseText;
  });
  document.addEventListener("DOMContentLoaded", function () {
    startTrial();
    document.querySelectorAll("[data-viewport-form]").forEach(fillViewport);
    var back = document.querySelector("[data-auto-redirect]");
    if (back) setTimeout(function () { window.location.assign(back.href); }, 3000);
  });
})();
