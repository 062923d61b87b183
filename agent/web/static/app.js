// sticky-agent's web page: POST the action forms without reloading, refresh the dashboard,
// and follow the live preview. Hand-written, no library, no build step.
"use strict";
(function () {
  var token = document.querySelector('meta[name="csrf-token"]').content;

  function post(form) {
    return fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-CSRF-Token": token },
      credentials: "same-origin",
    }).then(function (r) {
      if (!r.ok) { return r.text().then(function (t) { throw new Error(t); }); }
      return r.json();
    });
  }

  function say(text) {
    var el = document.getElementById("message");
    if (!el) {
      el = document.createElement("p");
      el.id = "message";
      document.querySelector("main").prepend(el);
    }
    el.textContent = text;
  }

  document.querySelectorAll("form.action").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      post(form).then(function (state) {
        if (form.action.endsWith("/capture")) { say("Capture asked for: it appears below within seconds."); }
        if (state && "running" in state) { showPreview(state); }
      }).catch(function (e) { say("Failed: " + e.message.replace(/<[^>]*>/g, " ").trim()); });
    });
  });

  // Dashboard: re-render every 5 s.
  var dash = document.getElementById("dashboard");
  if (dash) {
    setInterval(function () {
      fetch(dash.dataset.refresh, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { dash.innerHTML = html; })
        .catch(function () {});
    }, 5000);
  }

  // Captures: refresh the gallery after a capture was asked for.
  var gallery = document.getElementById("gallery");
  if (gallery) {
    setInterval(function () {
      if (!document.getElementById("message")) { return; }
      fetch(location.href, { credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById("gallery");
          if (fresh) { gallery.innerHTML = fresh.innerHTML; }
        }).catch(function () {});
    }, 3000);
  }

  // Aim & focus: follow the preview's state every second.
  var img = document.getElementById("preview-img");
  function text(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value === null || value === undefined ? "-" : value; }
  }
  function showPreview(s) {
    if (!img) { return; }
    var what = s.running ? (s.paused ? "paused: " + s.paused : "running") + " (stops in " + s.remaining_s + " s)" : "stopped";
    if (s.error) { what += "; camera error: " + s.error; }
    text("pv-state", what);
    text("pv-sharpness", s.sharpness);
    text("pv-exposure", s.exposure_us === null ? null : (s.exposure_us / 1000).toFixed(1) + " ms");
    text("pv-gain", s.analogue_gain);
    text("pv-lens", s.lens_position);
    text("pv-flash", s.flash ? "on" : "off");
    if (s.running && !img.getAttribute("src")) {
      img.src = img.dataset.src + "?t=" + Date.now();
    } else if (!s.running && img.getAttribute("src")) {
      img.removeAttribute("src");
    }
  }
  if (img) {
    var poll = function () {
      fetch("/preview/state.json", { credentials: "same-origin" })
        .then(function (r) { return r.json(); }).then(showPreview).catch(function () {});
    };
    poll();
    setInterval(poll, 1000);
  }
})();
