// Live updates over Server-Sent Events; no framework, no build step. Pages work without it (just not live).
"use strict";

function replaceKeepingOpen(container, html) {
  // Keep the <details> a person opened open across a refresh of the fragment.
  const open = new Set([...container.querySelectorAll("details[open][id]")].map((d) => d.id));
  const scroll = window.scrollY;
  container.innerHTML = html;
  open.forEach((id) => { const d = document.getElementById(id); if (d) d.open = true; });
  window.scrollTo(0, scroll);
}

function refreshFrom(container) {
  return fetch(container.dataset.fragment, { credentials: "same-origin", headers: { "Accept": "text/html" } })
    .then((r) => {
      if (r.redirected) { window.location.reload(); return Promise.reject(r.status); }  // the session ended
      return r.ok ? r.text() : Promise.reject(r.status);
    })
    .then((html) => replaceKeepingOpen(container, html))
    .catch(() => {});
}

function showTranscript(container, data) {
  // A running agent's output so far, as text (never HTML: it is the agent's); kept at the bottom if it was there.
  const pre = container.querySelector('[data-transcript-of="' + data.id + '"]');
  if (!pre) { refreshFrom(container); return; }  // the attempt started after the fragment was made
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.textContent = data.text;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function watchTicket(container) {
  // A "ticket" event means the ticket or one of its attempts changed (the first one: since the page was made).
  const source = new EventSource(container.dataset.liveTicket);
  source.addEventListener("ticket", () => refreshFrom(container));
  source.addEventListener("transcript", (event) => showTranscript(container, JSON.parse(event.data)));
}

function setStatus(el, status) {
  el.textContent = status;
  el.className = "status s-" + status;
}

function watchList(table) {
  const source = new EventSource(table.dataset.liveList);
  source.addEventListener("status", (event) => {
    const data = JSON.parse(event.data);
    const badge = table.querySelector('[data-status-of="' + data.id + '"]');
    if (badge) setStatus(badge, data.status);
    const reason = table.querySelector('[data-reason-of="' + data.id + '"]');
    if (reason) reason.textContent = data.reason;
  });
  source.addEventListener("new", () => {
    const note = document.getElementById("new-tickets");
    if (note) note.hidden = false;
  });
}

function watchFleet(container) {
  const source = new EventSource(container.dataset.liveFleet);
  let first = true;
  source.addEventListener("fleet", () => {
    if (first) { first = false; return; }
    refreshFrom(container);
  });
}

function watchReview(badge) {
  // The count of tickets waiting for review; marked "new" when it grew after the page was opened.
  const source = new EventSource(badge.dataset.liveReview);
  let seen = null;
  source.addEventListener("review", (event) => {
    const count = JSON.parse(event.data).count;
    badge.textContent = String(count);
    badge.hidden = count === 0;
    if (seen !== null && count > seen) badge.classList.add("new");
    if (seen === null || count < seen) seen = count;
    badge.setAttribute("aria-label", count + " waiting for review");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  if (!window.EventSource) return;
  document.querySelectorAll("[data-live-review]").forEach(watchReview);
  document.querySelectorAll("[data-live-ticket]").forEach(watchTicket);
  document.querySelectorAll("[data-live-list]").forEach(watchList);
  document.querySelectorAll("[data-live-fleet]").forEach(watchFleet);
});
