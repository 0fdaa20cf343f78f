// relsim studio: keyboard-first helpers. Every action also works without JavaScript
// through ordinary links and forms; this file only makes them faster.
(function () {
  "use strict";

  const page = document.body.dataset.page || "";
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));

  // A stale save answers 409 and a refused one 422: show those bodies instead of dropping them.
  document.addEventListener("DOMContentLoaded", () => {
    if (window.htmx) {
      htmx.config.responseHandling = [
        { code: "204", swap: false },
        { code: "[23]..", swap: true },
        { code: "409", swap: true, error: false },
        { code: "422", swap: true, error: false },
        { code: "[45]..", swap: false, error: true },
      ];
    }
  });

  // A stale autosave opened the merge form: the editor's box stops saving and goes read-only,
  // so the merge form is the only way to save (its autosave would only collect more 409s).
  document.addEventListener("caption-conflict", () => {
    const area = document.getElementById("caption-text");
    if (!area) return;
    // hx-disable also voids a keyup autosave still waiting out its delay.
    area.setAttribute("hx-disable", "");
    area.removeAttribute("hx-trigger");
    htmx.process(area);
    area.readOnly = area.disabled = true;
    document.querySelectorAll("#caption-form button").forEach((b) => (b.disabled = true));
    const merged = document.getElementById("merged-text");
    if (merged) merged.focus();
  });

  // A POST sent by htmx (its own request headers, the CSRF header from <body hx-headers>),
  // the answer swapped into `target` under htmx's response rules. Resolves to whether the
  // server accepted it; `source` must stay in the page, since htmx reports on it.
  function post(url, values, { source, target, swap }) {
    let ok = false;
    const seen = (event) => {
      if (event.target === source) ok = event.detail.successful;
    };
    source.addEventListener("htmx:afterRequest", seen);
    return htmx
      .ajax("POST", url, { source, target, swap, values })
      .then(() => ok, () => false)
      .finally(() => source.removeEventListener("htmx:afterRequest", seen));
  }

  function say(text) {
    const status = document.getElementById("pool-status");
    if (status) status.textContent = text;
  }

  // --- shortcuts dialog --------------------------------------------------------------
  const dialog = document.getElementById("shortcuts");
  document.querySelectorAll("[data-show-shortcuts]").forEach((b) =>
    b.addEventListener("click", () => dialog.showModal())
  );

  // --- pool: focus, selection, labels, add to group --------------------------------
  const selected = new Set();
  let anchor = null;

  function tiles() {
    return Array.from(document.querySelectorAll("#grid .tile"));
  }

  function refreshSelection() {
    tiles().forEach((t) => t.classList.toggle("selected", selected.has(t.dataset.id)));
    const ids = document.getElementById("selection-ids");
    const count = document.getElementById("selection-count");
    const button = document.getElementById("add-selected");
    if (ids) ids.value = Array.from(selected).join(",");
    if (count) count.textContent = String(selected.size);
    if (button) button.disabled = selected.size === 0;
  }

  function toggle(tile, range) {
    const all = tiles();
    if (range && anchor) {
      const [a, b] = [all.indexOf(anchor), all.indexOf(tile)].sort((x, y) => x - y);
      all.slice(a, b + 1).forEach((t) => selected.add(t.dataset.id));
    } else if (selected.has(tile.dataset.id)) {
      selected.delete(tile.dataset.id);
    } else {
      selected.add(tile.dataset.id);
    }
    anchor = tile;
    refreshSelection();
  }

  function moveFocus(current, key) {
    const all = tiles();
    if (!all.length) return;
    const index = Math.max(0, all.indexOf(current));
    const top = all[0].offsetTop;
    const perRow = Math.max(1, all.filter((t) => t.offsetTop === top).length);
    const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -perRow, ArrowDown: perRow }[key];
    const next = all[Math.min(all.length - 1, Math.max(0, index + step))];
    next.focus();
  }

  async function label(tile, answer) {
    const ok = await post(tile.dataset.labelUrl, { interesting: answer }, {
      source: tile,
      target: "#label-" + tile.dataset.id,
      swap: "outerHTML",
    });
    if (ok) {
      say(`Image ${tile.dataset.id}: ${answer}`);
    } else {
      say(`Could not label image ${tile.dataset.id}.`);
    }
  }

  async function addToGroup(ids) {
    const form = document.getElementById("add-selection");
    if (!form) {
      say("No current group: open a group and make it current first.");
      return;
    }
    const status = document.getElementById("pool-status");
    const ok = await post(form.action, { images: ids.join(",") }, {
      source: status,
      target: status,
      swap: "innerHTML",
    });
    if (ok) {
      selected.clear();
      refreshSelection();
    } else {
      say("Could not add to the group.");
    }
  }

  if (page === "pool") {
    document.addEventListener("click", (event) => {
      const tile = event.target.closest("#grid .tile");
      if (!tile || event.target.closest("a")) {
        if (tile && (event.shiftKey || event.metaKey || event.ctrlKey)) event.preventDefault();
        else return;
      }
      toggle(tile, event.shiftKey);
      tile.focus();
    });
    const selectPage = document.getElementById("select-page");
    if (selectPage) {
      selectPage.addEventListener("change", () => {
        tiles().forEach((t) => (selectPage.checked ? selected.add(t.dataset.id) : selected.delete(t.dataset.id)));
        refreshSelection();
      });
    }
    const first = tiles()[0];
    if (first) first.focus();
  }

  // --- group page: drag a member to a new place ------------------------------------------
  // The ↑ ↓ forms keep working without JavaScript; dragging posts the whole new order to the
  // same view, then reloads the members so those forms carry the new order too.
  if (page === "group") {
    let dragged = null;
    let startOrder = "";
    const list = () => document.getElementById("members");
    const orderOf = (ol) => Array.from(ol.querySelectorAll(".member")).map((m) => m.dataset.id).join(",");

    document.addEventListener("dragstart", (event) => {
      const member = event.target.closest ? event.target.closest("#members .member") : null;
      if (!member) return;
      dragged = member;
      startOrder = orderOf(list());
      member.classList.add("dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", member.dataset.id);
    });

    document.addEventListener("dragover", (event) => {
      if (!dragged) return;
      const ol = list();
      if (!ol || !ol.contains(event.target)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      const over = event.target.closest(".member");
      if (!over || over === dragged) return;
      const box = over.getBoundingClientRect();
      const after = event.clientX > box.left + box.width / 2;
      ol.insertBefore(dragged, after ? over.nextSibling : over);
    });

    document.addEventListener("drop", (event) => {
      if (dragged && list() && list().contains(event.target)) event.preventDefault();
    });

    document.addEventListener("dragend", async (event) => {
      if (!dragged) return;
      const member = dragged;
      dragged = null;
      member.classList.remove("dragging");
      const ol = list();
      if (!ol) return;
      const restore = () =>
        startOrder.split(",").forEach((id) => ol.appendChild(ol.querySelector(`.member[data-id="${id}"]`)));
      // Dropped outside the list: put everything back where it was.
      if (event.dataTransfer.dropEffect === "none") { restore(); return; }
      const order = orderOf(ol);
      if (order === startOrder) return;
      const ok = await post(ol.dataset.orderUrl, { order }, { source: ol, target: ol, swap: "none" });
      // A refused order (someone else changed the group meanwhile) snaps back.
      if (!ok) { restore(); return; }
      const panel = document.getElementById("members-panel");
      if (panel) htmx.ajax("GET", panel.getAttribute("hx-get"), { source: panel, target: panel, swap: "outerHTML" });
    });
  }

  // --- review queue: bulk selection ----------------------------------------------------
  const bulkForm = document.getElementById("bulk-form");
  if (bulkForm) {
    const picks = () => Array.from(document.querySelectorAll(".bulk-pick"));
    const sync = () => {
      document.getElementById("bulk-ids").value = picks().filter((p) => p.checked).map((p) => p.value).join(",");
    };
    picks().forEach((p) => p.addEventListener("change", sync));
    const all = document.getElementById("bulk-all");
    if (all) all.addEventListener("change", () => { picks().forEach((p) => (p.checked = all.checked)); sync(); });
  }

  // --- keys ------------------------------------------------------------------------------
  // A key names its button in either case (`a` and `A` both approve), so Caps Lock or a
  // forgotten Shift does not matter; an exact match wins where both cases are taken.
  function keyTarget(key) {
    if (key.length !== 1) return null;
    return (
      document.querySelector(`[data-key="${key}"]`) ||
      document.querySelector(`[data-key="${key === key.toLowerCase() ? key.toUpperCase() : key.toLowerCase()}"]`)
    );
  }

  function clickKey(key) {
    const target = keyTarget(key);
    if (!target || target.disabled) return false;
    if (target.tagName === "SUMMARY") {
      target.parentElement.open = true;
      const area = target.parentElement.querySelector("textarea");
      if (area) area.focus();
    } else if (target.tagName === "BUTTON" && target.form && target.form.id === "reject-form") {
      const reason = document.getElementById("reject-reason");
      if (reason && !reason.value) { reason.focus(); return true; }
      target.click();
    } else {
      target.click();
    }
    return true;
  }

  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s" && page === "editor") {
      event.preventDefault();
      const area = document.getElementById("caption-text");
      const merge = document.getElementById("merge-form");
      if (merge) merge.requestSubmit();
      else if (area && area.hasAttribute("hx-post")) htmx.trigger(area, "caption-save");
      else document.getElementById("caption-form").requestSubmit();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(document.activeElement)) return;
    if (event.key === "?") {
      event.preventDefault();
      dialog.open ? dialog.close() : dialog.showModal();
      return;
    }
    if (page === "pool") {
      const tile = document.activeElement.closest ? document.activeElement.closest("#grid .tile") : null;
      if (event.key.startsWith("Arrow")) { event.preventDefault(); moveFocus(tile, event.key); return; }
      if (!tile) return;
      if (event.key === "y") label(tile, "yes");
      else if (event.key === "n") label(tile, "no");
      else if (event.key === "x") toggle(tile, false);
      else if (event.key === "a") addToGroup(selected.size ? Array.from(selected) : [tile.dataset.id]);
      else if (event.key === "Enter") window.location = tile.dataset.detailUrl;
      return;
    }
    if (page === "image") {
      const form = document.querySelector("[data-label-form]");
      if (event.key === "y" || event.key === "n") {
        form.querySelector(`button[value="${event.key === "y" ? "yes" : "no"}"]`).click();
      } else if (event.key === "a") {
        const add = document.querySelector("[data-add-form]");
        if (add) add.requestSubmit();
      }
      return;
    }
    if (page === "label" || page === "review") {
      if (clickKey(event.key)) event.preventDefault();
    }
  });
})();

// A form that destroys data asks first (data-confirm holds the question).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset ? event.target.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});
