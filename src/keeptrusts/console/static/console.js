// Keeptrusts console: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  // Integrity: run verification in place and announce the result (aria-live region).
  function enhanceVerify(form) {
    var out = document.getElementById("verify-result");
    var busy = form.querySelector("[data-busy]");
    var button = form.querySelector("button");
    form.addEventListener("submit", function (ev) {
      if (!window.fetch || !out) return;
      ev.preventDefault();
      button.disabled = true;
      if (busy) busy.hidden = false;
      out.setAttribute("aria-busy", "true");
      fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        credentials: "same-origin",
        headers: { "X-Console-Fragment": "verify" }
      }).then(function (resp) {
        if (resp.status === 403 || resp.redirected) {
          window.location.reload();
          return null;
        }
        return resp.text();
      }).then(function (html) {
        if (html !== null) out.innerHTML = html;
      }).catch(function () {
        out.textContent = "Verification could not be run: the gateway did not answer.";
      }).then(function () {
        button.disabled = false;
        if (busy) busy.hidden = true;
        out.removeAttribute("aria-busy");
      });
    });
  }

  // Filters: leave empty fields out of the URL so links stay short and readable.
  function enhanceFilters(form) {
    form.addEventListener("submit", function () {
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && !el.value) el.disabled = true;
      });
      setTimeout(function () {
        Array.prototype.forEach.call(form.elements, function (el) { el.disabled = false; });
      }, 0);
    });
  }

  // "/" jumps to the search box on the events page (unless typing somewhere already).
  function searchShortcut() {
    var search = document.getElementById("f-q");
    if (!search) return;
    document.addEventListener("keydown", function (ev) {
      var t = ev.target;
      var typing = t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA");
      if (ev.key === "/" && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
        ev.preventDefault();
        search.focus();
      }
    });
  }

  // Phones: fold the less used filters away unless one of them is set.
  function foldFilters(details) {
    if (!details.hasAttribute("data-active") && window.matchMedia &&
        window.matchMedia("(max-width: 600px)").matches) {
      details.open = false;
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var more = document.querySelector("details[data-more-filters]");
    if (more) foldFilters(more);
    var verify = document.querySelector("form[data-verify]");
    if (verify) enhanceVerify(verify);
    var filters = document.querySelector("form.filters");
    if (filters) enhanceFilters(filters);
    searchShortcut();
  });
})();
