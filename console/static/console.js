// mcp-gateway console: progressive enhancement only; every page works without it.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // A page rendered by a form action (a key shown once, an error) stands for the GET page:
  // reloading it shows the page again instead of repeating the action.
  const canonical = document.body.dataset.canonical;
  if (canonical && location.pathname + location.search !== canonical) {
    history.replaceState(null, "", canonical);
  }

  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      const status = button.closest("section")?.querySelector(".copied");
      const text = source ? source.textContent : "";
      let done = false;
      try {
        await navigator.clipboard.writeText(text);
        done = true;
      } catch (_) {
        done = copyBySelection(source);
      }
      if (status) {
        status.textContent = done ? "Copied." : "Copying failed: select the text and copy it.";
      }
    });
  }

  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      const confirmed = form.querySelector("input[name=confirmed]");
      if (confirmed) confirmed.value = "1";
    });
  }
});

function copyBySelection(element) {
  if (!element) return false;
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  try {
    return document.execCommand("copy");
  } catch (_) {
    return false;
  } finally {
    selection.removeAllRanges();
  }
}
