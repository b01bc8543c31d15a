// herald admin pages: the little script that makes them quicker to use. Every page works without
// it except the resource grid, whose boxes save through the admin API the moment they are clicked.
"use strict";

// The page's language: its messages come with it (layout.html), English when they do not.
const say = (() => {
  const element = document.getElementById("admin-messages");
  let messages = {};
  try { messages = element ? JSON.parse(element.textContent) : {}; } catch (_) { /* English */ }
  return (key, english) => messages[key] || english;
})();

(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (_) { /* not JSON */ }
    return "HTTP " + response.status;
  }

  // The resource grid: PUT ticks a cell, DELETE clears it; a failed save puts the box back and
  // says why beside it.
  document.addEventListener("change", async (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.dataset.cellUrl) return;
    const row = box.closest("[data-row]");
    const state = row ? row.querySelector(".save-state") : null;
    const wanted = box.checked;
    const show = (text, kind) => {
      if (!state) return;
      state.textContent = text;
      state.className = "save-state " + kind;
      if (kind === "failed") state.setAttribute("role", "alert"); else state.removeAttribute("role");
    };
    box.disabled = true;
    show(say("js-saving", "Saving…"), "saving");
    try {
      const response = await fetch(box.dataset.cellUrl, {
        method: wanted ? "PUT" : "DELETE",
        headers: { "x-csrf-token": csrf, "accept": "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(await errorMessage(response));
      show(say("js-saved", "Saved"), "saved");
    } catch (e) {
      box.checked = !wanted;
      show(say("js-not-saved", "Not saved:") + " " + e.message, "failed");
    } finally {
      box.disabled = false;
      box.focus();
    }
  });

  async function fetchFragment(url) {
    const separator = url.includes("?") ? "&" : "?";
    const response = await fetch(url + separator + "fragment=1", { credentials: "same-origin" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const template = document.createElement("template");
    template.innerHTML = await response.text();
    return template.content;
  }

  // "Show only failures": reload the deliveries log in place, and keep the choice in the address
  // so that a reload shows the same list.
  document.addEventListener("change", async (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || box.id !== "only-failures") return;
    const list = document.getElementById("deliveries-list");
    if (!list) return;
    const base = "/admin/hooks/" + encodeURIComponent(list.dataset.hookId) + "/deliveries";
    const url = box.checked ? base + "?only_failures=true" : base;
    list.setAttribute("aria-busy", "true");
    try {
      const fragment = await fetchFragment(url);
      list.replaceChildren(fragment);
      const address = new URL(window.location.href);
      if (box.checked) address.searchParams.set("only_failures", "true");
      else address.searchParams.delete("only_failures");
      window.history.replaceState(null, "", address);
    } catch (e) {
      list.insertAdjacentHTML("afterbegin", '<p class="error-text" role="alert"></p>');
      list.firstElementChild.textContent = say("js-deliveries-failed", "Could not load the deliveries:") + " " + e.message;
    } finally {
      list.removeAttribute("aria-busy");
    }
  });

  // "More deliveries": append the next 25 instead of leaving the page.
  document.addEventListener("click", async (event) => {
    const link = event.target instanceof Element ? event.target.closest("a[data-more-deliveries]") : null;
    if (!link) return;
    const list = link.closest("#deliveries-list");
    if (!list) return;
    event.preventDefault();
    link.setAttribute("aria-busy", "true");
    try {
      const fragment = await fetchFragment(link.getAttribute("href"));
      const entries = fragment.querySelector("[data-deliveries]");
      const target = list.querySelector("[data-deliveries]");
      const firstNew = entries ? entries.firstElementChild : null;
      if (entries && target) target.append(...entries.children);
      const more = fragment.querySelector("[data-more]");
      list.querySelector("[data-more]").replaceWith(more);
      const focus = firstNew ? firstNew.querySelector("summary") : null;
      if (focus) focus.focus();
    } catch (e) {
      link.textContent = say("js-more-failed", "Failed to load more deliveries; click to try again:") + " " + e.message;
      link.removeAttribute("aria-busy");
    }
  });

  // A delivery opens to its request and response, loaded the first time it is opened.
  document.addEventListener("toggle", async (event) => {
    const details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.open || !details.dataset.detailUrl) return;
    if (details.dataset.loaded) return;
    details.dataset.loaded = "1";
    const holder = details.querySelector("[data-detail]");
    try {
      const response = await fetch(details.dataset.detailUrl, { credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      holder.innerHTML = await response.text();
    } catch (e) {
      delete details.dataset.loaded;
      holder.textContent = say("js-delivery-failed", "Could not load this delivery:") + " " + e.message;
    }
  }, true);

  // A secret shown once: its button copies it.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) return;
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
      button.textContent = say("js-copied", "Copied");
    } catch (e) {
      // No clipboard (plain http, an old browser): select the text to copy by hand.
      const code = button.previousElementSibling;
      if (code) window.getSelection().selectAllChildren(code);
      button.textContent = say("js-select-and-copy", "Select and copy");
    }
  });

  // Forms that cannot be undone ask first.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
})();

// Backfills that still move: their progress follows the API every second until they end.
(function () {
  const table = document.getElementById("backfills");
  if (!table) return;
  const url = "/api/v1/hooks/" + encodeURIComponent(table.dataset.hookId) + "/backfills";
  async function follow() {
    if (!table.querySelector("tr[data-moving]")) return;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { "accept": "application/json" } });
      if (response.ok) {
        const body = await response.json();
        for (const backfill of body.backfills) {
          const row = table.querySelector('tr[data-backfill-id="' + backfill.id + '"]');
          if (!row) continue;
          row.querySelector("progress").value = backfill.done;
          row.querySelector(".backfill-count").textContent = backfill.done + " / " + backfill.rows;
          const status = row.querySelector(".backfill-status");
          status.textContent = say("backfill-status-" + backfill.status, backfill.status);
          status.className = "badge backfill-status " +
            (backfill.status === "done" ? "badge-success" : backfill.status === "failed" ? "badge-failure" : "badge-info");
          if (backfill.status !== "running" && backfill.status !== "preparing") {
            row.removeAttribute("data-moving");
            const cancel = row.querySelector(".backfill-cancel");
            if (cancel) cancel.remove();
          }
        }
      }
    } catch (_) { /* the next look tries again */ }
    setTimeout(follow, 1000);
  }
  setTimeout(follow, 1000);
})();
