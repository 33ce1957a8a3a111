/* Catalog Portal instance pages: small enhancements. Every page works without this file. */
(function () {
  "use strict";

  if (window.htmx) {
    // Form fragments come back as 422 (errors beside the fields), 403 (refused) or 409 (busy): show them.
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "(403|409|422)", swap: true, error: false },
      { code: "[45]..", swap: false, error: true },
    ];
  }

  // The polled status re-renders the timeline: keep each <details> as the person left it.
  var detailsState = {};
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (!target || !target.querySelectorAll) return;
    target.querySelectorAll("details[id]").forEach(function (el) { detailsState[el.id] = el.open; });
  });
  document.addEventListener("htmx:afterSettle", function () {
    Object.keys(detailsState).forEach(function (id) {
      var el = document.getElementById(id);
      if (el) el.open = detailsState[id];
    });
    detailsState = {};
    // After an editor button (add a row, preview, reveal), move focus where the change is.
    var focus = document.querySelector("[data-focus]");
    if (focus) {
      focus.removeAttribute("data-focus");
      focus.focus({ preventScroll: false });
      if (focus.scrollIntoView) focus.scrollIntoView({ block: "nearest" });
    }
  });

  // A link of the error summary puts the cursor in its field (without script it only scrolls there).
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest(".error-summary a[href^='#']");
    if (!link) return;
    var field = document.getElementById(link.getAttribute("href").slice(1));
    if (!field) return;
    event.preventDefault();
    if (field.tabIndex < 0 && !/^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(field.tagName)) field.tabIndex = -1;
    field.focus({ preventScroll: true });
    field.scrollIntoView({ block: "center" });
  });

  function copyText(text, button) {
    var done = function () {
      var label = button.firstChild.nodeValue;
      button.firstChild.nodeValue = "Copied";
      setTimeout(function () { button.firstChild.nodeValue = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
      return;
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); done(); } finally { document.body.removeChild(area); }
  }

  // Sections marked data-tabs become tabs (without script they are shown one after the other).
  function makeTabs(box) {
    if (box.dataset.ready) return;
    box.dataset.ready = "1";
    var panels = Array.prototype.slice.call(box.querySelectorAll(":scope > .tab-panel"));
    if (panels.length < 2) return;
    var list = document.createElement("div");
    list.className = "tablist";
    list.setAttribute("role", "tablist");
    if (box.dataset.tabsLabel) list.setAttribute("aria-label", box.dataset.tabsLabel);
    var tabs = panels.map(function (panel, i) {
      var title = panel.querySelector(".tab-title");
      var tab = document.createElement("button");
      tab.type = "button";
      tab.id = panel.id + "-tab";
      tab.textContent = title ? title.textContent : "Tab " + (i + 1);
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-controls", panel.id);
      panel.setAttribute("role", "tabpanel");
      panel.setAttribute("aria-labelledby", tab.id);
      list.appendChild(tab);
      return tab;
    });
    function select(index, focus) {
      tabs.forEach(function (tab, i) {
        var on = i === index;
        tab.setAttribute("aria-selected", on ? "true" : "false");
        tab.tabIndex = on ? 0 : -1;
        panels[i].hidden = !on;
      });
      if (focus) tabs[index].focus();
    }
    tabs.forEach(function (tab, i) {
      tab.addEventListener("click", function () { select(i, false); });
      tab.addEventListener("keydown", function (event) {
        var step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
        if (event.key === "Home") step = -i;
        if (event.key === "End") step = tabs.length - 1 - i;
        if (step === undefined) return;
        event.preventDefault();
        select((i + step + tabs.length) % tabs.length, true);
      });
    });
    box.insertBefore(list, panels[0]);
    box.classList.add("is-tabs");
    select(0, false);
  }

  function init(root) {
    if (root.querySelectorAll) root.querySelectorAll("[data-tabs]").forEach(makeTabs);
    // Copy buttons are hidden until there is script to run them.
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      if (button.dataset.ready) return;
      button.dataset.ready = "1";
      button.hidden = false;
      button.addEventListener("click", function () {
        var source = document.getElementById(button.dataset.copy);
        if (source) copyText(source.textContent, button);
      });
    });
    // Typed-name confirmation: the button stays disabled until the name matches (the server checks too).
    root.querySelectorAll("[data-confirm-name]").forEach(function (input) {
      var button = input.form && input.form.querySelector("[data-confirm-button]");
      if (!button || input.dataset.ready) return;
      input.dataset.ready = "1";
      var update = function () { button.disabled = input.value.trim() !== input.dataset.confirmName; };
      input.addEventListener("input", update);
      update();
    });
    // Focus asked for by a full-page answer (no htmx swap happened).
    var focus = root.querySelector && root.querySelector("[data-focus]");
    if (focus && root === document.body) {
      focus.removeAttribute("data-focus");
      focus.focus();
    }
  }

  if (window.htmx) {
    htmx.onLoad(init);
  } else {
    document.addEventListener("DOMContentLoaded", function () { init(document.body); });
  }
})();
