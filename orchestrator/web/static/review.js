// The review diff view: unified/split toggle and line comments that join the Reject form. No framework.
// Everything taken from the page (file names) goes into text nodes and attributes, never into innerHTML.
"use strict";

function setMode(view, mode) {
  view.classList.toggle("mode-split", mode === "split");
  view.classList.toggle("mode-unified", mode !== "split");
}

function field(tag, form, name, value) {
  const el = document.createElement(tag);
  if (tag === "input") el.type = "hidden";
  el.setAttribute("form", form);
  el.name = name;
  el.value = value;
  return el;
}

function addComment(button) {
  const view = button.closest(".review-diff");
  const form = view && view.dataset.form;
  if (!form) return;
  const row = button.closest("tr");
  const next = row.nextElementSibling;
  if (next && next.classList.contains("comment-row")) { next.querySelector("textarea").focus(); return; }
  const path = button.dataset.path, line = button.dataset.line;
  const comment = document.createElement("tr");
  comment.className = "comment-row";
  const cell = document.createElement("td");
  cell.colSpan = row.children.length;
  const label = document.createElement("label");
  label.textContent = `Comment on ${path}:${line} (sent with Reject)`;
  const text = field("textarea", form, "comment_text", "");
  text.rows = 2;
  text.className = "line-comment-text";
  cell.append(label, text, field("input", form, "comment_path", path), field("input", form, "comment_line", line));
  comment.append(cell);
  row.after(comment);
  text.focus();
}

document.addEventListener("click", (event) => {
  const mode = event.target.closest(".diff-mode");
  if (mode) { setMode(mode.closest(".review-diff"), mode.dataset.mode); return; }
  const line = event.target.closest("button.line-comment");
  if (line) addComment(line);
});
