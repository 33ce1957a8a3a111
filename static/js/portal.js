/* Catalog Portal: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";
  // With this script the marketplace updates live, so its submit buttons can go.
  document.documentElement.classList.add("js");

  // A broken service icon falls back to the letter tile rendered next to it.
  document.addEventListener("error", function (event) {
    var img = event.target;
    if (img.tagName !== "IMG" || !img.hasAttribute("data-fallback")) return;
    var tile = img.nextElementSibling;
    img.hidden = true;
    if (tile) tile.hidden = false;
  }, true);

  var narrow = window.matchMedia("(max-width: 799px)");
  var openState = {};

  function rememberDetails() {
    openState = {};
    document.querySelectorAll("details[id]").forEach(function (d) { openState[d.id] = d.open; });
  }

  function restoreDetails() {
    Object.keys(openState).forEach(function (id) {
      var d = document.getElementById(id);
      if (d) d.open = openState[id];
    });
  }

  function afterResults() {
    var results = document.getElementById("store-results");
    if (!results) return;
    var q = document.getElementById("global-q");
    if (q && document.activeElement !== q && q.value !== results.dataset.q) q.value = results.dataset.q || "";
    var announcer = document.getElementById("store-announcer");
    if (announcer) announcer.textContent = results.dataset.count || "";
    var error = document.getElementById("store-error");
    if (error) error.hidden = true;
  }

  // Facets start folded above the grid on small screens; open beside it on wide ones (also when the window is
  // resized or the phone turned).
  function fitFilters() {
    var panel = document.getElementById("filters-panel");
    if (panel) panel.open = !narrow.matches;
  }
  document.addEventListener("DOMContentLoaded", fitFilters);
  if (narrow.addEventListener) narrow.addEventListener("change", fitFilters);

  document.addEventListener("htmx:beforeSwap", rememberDetails);
  document.addEventListener("htmx:afterSwap", function () { restoreDetails(); afterResults(); });
  document.addEventListener("htmx:historyRestore", afterResults);

  function showError() {
    var error = document.getElementById("store-error");
    if (error) error.hidden = false;
  }
  document.addEventListener("htmx:responseError", showError);
  document.addEventListener("htmx:sendError", showError);

  // The user menu closes on Escape and on a click elsewhere.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.usermenu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.open = false;
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.usermenu[open]").forEach(function (menu) {
      menu.open = false;
      menu.querySelector("summary").focus();
    });
  });
})();
