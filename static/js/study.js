// The participant's pages: the viewport goes with the consent and each answer; the response
// time runs from the moment the trial's images are all on screen; keys 1-3 and the arrows
// answer; one answer per trial is sent however often a button is pressed. An answer is sent
// in the background and the next trial drawn in place from the reply (its images were
// fetched while the last one was on screen); without this script the form posts and the
// server redirects to the next trial.
(function () {
  "use strict";

  var SLOTS = ["query", "left", "right"];

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
    var position = form.querySelector('input[name="position"]').value;
    var images = Array.prototype.slice.call(document.querySelectorAll("[data-trial-image]"));
    var waiting = images.filter(function (img) { return !img.complete; }).length;
    function shown() {
      // A reply that drew another trial meanwhile has its own clock.
      if (form.querySelector('input[name="position"]').value === position) shownAt = firstShown(form);
    }
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
    if (elapsed) elapsed.value = shownAt !== null ? String(Math.max(0, Date.now() - shownAt)) : "";
    fillViewport(form);
    return true;
  }

  function imageUrl(trial, position, slot) {
    return trial.dataset.imageUrl.replace("{position}", String(position)).replace("{slot}", slot);
  }

  function notice(text) {
    var note = document.getElementById("answer-notice");
    if (!note) return;
    note.textContent = text;
    note.hidden = !text;
  }

  // The next trial in place of the one answered: its images, position, progress and clock.
  function drawTrial(trial, form, reply) {
    SLOTS.forEach(function (slot) {
      var img = trial.querySelector('[data-trial-image="' + slot + '"]');
      if (img) img.src = imageUrl(trial, reply.position, slot);
    });
    trial.dataset.position = String(reply.position);
    form.querySelector('input[name="position"]').value = String(reply.position);
    form.querySelector('input[name="response_ms"]').value = "";
    var progress = trial.querySelector("progress");
    if (progress) {
      progress.value = reply.answered;
      progress.textContent = Math.round((100 * reply.answered) / reply.total) + "%";
    }
    document.getElementById("trial-number").textContent = String(reply.answered + 1);
    document.title = document.title.replace(/^Trial \d+/, "Trial " + (reply.answered + 1));
    var preload = trial.querySelector("[data-preload]");
    if (preload) {
      preload.textContent = "";
      if (reply.following !== null) {
        SLOTS.forEach(function (slot) {
          var img = document.createElement("img");
          img.alt = "";
          img.src = imageUrl(trial, reply.following, slot);
          preload.appendChild(img);
        });
      }
    }
    notice("");
    delete form.dataset.sent;
    form.classList.remove("answered");
    // The button just pressed keeps no focus ring into the next trial, where it would look
    // chosen already.
    if (document.activeElement && form.contains(document.activeElement)) document.activeElement.blur();
    startTrial();
  }

  // The server's reason in place of the trial (a closed study, an expired session): a reload
  // resumes where the participant stands.
  function showMessage(trial, title, text) {
    var section = document.createElement("section");
    section.id = "trial";
    var heading = document.createElement("h1");
    heading.textContent = title;
    var paragraph = document.createElement("p");
    paragraph.id = "study-message";
    paragraph.setAttribute("role", "alert");
    paragraph.textContent = text;
    section.appendChild(heading);
    section.appendChild(paragraph);
    trial.replaceWith(section);
  }

  // Nothing was stored, or nothing is known: the same answer may be sent again safely.
  function letRetry(form, text) {
    notice(text);
    delete form.dataset.sent;
    form.classList.remove("answered");
  }

  function send(form, choice) {
    var trial = document.getElementById("trial");
    var body = new URLSearchParams(new FormData(form));
    body.set("choice", choice);
    fetch(form.action, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        return response.json().then(
          function (reply) { return { ok: response.ok, status: response.status, reply: reply }; },
          function () { return { ok: false, status: response.status, reply: null }; }
        );
      })
      .then(function (result) {
        var reply = result.reply;
        if (result.ok && reply.done) {
          window.location.assign(reply.done);
        } else if (result.ok) {
          drawTrial(trial, form, reply);
        } else if (result.status === 429 && reply) {
          letRetry(form, reply.text);
        } else if (reply && reply.title) {
          showMessage(trial, reply.title, reply.text);
        } else {
          letRetry(form, "Your answer could not be saved. Please choose again.");
        }
      })
      .catch(function () {
        letRetry(form, "Your answer was not sent: check your connection and choose again.");
      });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.matches("[data-viewport-form]")) fillViewport(form);
    if (!form.matches("[data-answer-form]")) return;
    var button = event.submitter;
    var choice = button ? button.value : "";
    if (!markAnswered(form, choice)) {
      event.preventDefault();
      return;
    }
    if (window.fetch && window.URLSearchParams && choice) {
      event.preventDefault();
      form.classList.add("answered");
      send(form, choice);
      return;
    }
    // Posted by the browser: disabled only after it has read the pressed button's value.
    setTimeout(function () { form.classList.add("answered"); }, 0);
  });

  var KEYS = { "1": "left", ArrowLeft: "left", "2": "same", ArrowDown: "same", "3": "right", ArrowRight: "right" };

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    var choice = KEYS[event.key];
    var form = document.querySelector("[data-answer-form]");
    if (!choice || !form || form.dataset.sent) return;
    var button = form.querySelector('button[value="' + choice + '"]');
    if (!button) return;
    event.preventDefault();
    // A click, not requestSubmit: the submit event then names the pressed button.
    button.click();
  });

  document.addEventListener("DOMContentLoaded", function () {
    startTrial();
    document.querySelectorAll("[data-viewport-form]").forEach(fillViewport);
    var back = document.querySelector("[data-auto-redirect]");
    if (back) setTimeout(function () { window.location.assign(back.href); }, 3000);
  });
})();
