// adaptloop dashboard: live updates, trace filters, admin buttons. No dependencies, no external requests.
(function () {
  "use strict";
  var poll = Number(document.body.dataset.pollMs) || 2000;
  var dot = document.getElementById("live-dot");
  var stamp = document.body.dataset.stamp;  // the store as this page shows it
  var busy = false;

  // ------------------------------------------------------------------ live: reload [data-live] regions
  function openDetails(el) {
    return Array.prototype.map.call(el.querySelectorAll("details"), function (d) { return d.open; });
  }
  function swap(fresh) {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var next = fresh.getElementById(el.id);
      if (!next) return;  // forms live outside the live regions: typing is never interrupted
      var open = openDetails(el);
      el.className = next.className;
      el.innerHTML = next.innerHTML;
      el.querySelectorAll("details").forEach(function (d, i) { if (i < open.length) d.open = open[i]; });
    });
    stamp = fresh.body.dataset.stamp || stamp;
    restoreToken();
    document.dispatchEvent(new CustomEvent("dashboard:updated"));
  }
  function refresh() {
    return fetch(location.href, { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) { swap(new DOMParser().parseFromString(text, "text/html")); });
  }
  function tick() {
    if (busy || document.hidden) return;
    busy = true;
    fetch("/ui/stamp").then(function (r) { return r.json(); }).then(function (d) {
      dot && dot.classList.add("on");
      if (d.stamp !== stamp) return refresh();  // the refreshed page brings its own stamp
    }).catch(function () { dot && dot.classList.remove("on"); })
      .then(function () { busy = false; });
  }
  if (document.querySelector("[data-live]")) { tick(); setInterval(tick, poll); }

  // ------------------------------------------------------------------ trace table filters
  var form = document.getElementById("trace-filter");
  var table = document.getElementById("trace-table");
  var timer = null;
  var asked = 0;  // only the newest filter's answer is shown, whatever order the answers arrive in
  function load(params) {
    var qs = new URLSearchParams(params).toString();
    var mine = ++asked;
    fetch("/ui/traces?" + qs).then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        if (mine !== asked) return;
        table.innerHTML = html;
        history.replaceState(null, "", "/traffic?" + qs + "#traces");
        document.dispatchEvent(new CustomEvent("dashboard:filtered"));
      }, function () { /* the table keeps what it showed; the next change asks again */ });
  }
  function filters() {
    var params = {};
    new FormData(form).forEach(function (v, k) { if (v) params[k] = v; });
    return params;
  }
  if (form && table) {
    form.addEventListener("submit", function (e) { e.preventDefault(); load(filters()); });
    form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(function () { load(filters()); }, 250); });
    form.addEventListener("change", function () { clearTimeout(timer); load(filters()); });
    table.addEventListener("click", function (e) {
      var a = e.target.closest("a[data-page]");
      if (!a) return;
      e.preventDefault();
      var params = filters();
      params.page = a.dataset.page;
      load(params);
    });
  }

  // ------------------------------------------------------------------ admin: promote / roll back
  var KEY = "adaptloop-admin-token";
  function token() { return sessionStorage.getItem(KEY) || ""; }
  function restoreToken() {
    var input = document.getElementById("admin-token");
    if (input && !input.value) input.value = token();
    document.querySelectorAll("[data-admin]").forEach(function (b) { b.disabled = !token(); });
  }
  function say(text) { var out = document.getElementById("admin-result"); if (out) out.textContent = text; }
  function admin(path, body) {
    return fetch(path, { method: "POST", headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
                         body: JSON.stringify(body || {}) })
      .then(function (r) { return r.json().then(function (d) { return { ok: r.ok, d: d }; }); })
      .then(function (x) {
        if (!x.ok) { say("refused: " + (typeof x.d.error === "string" ? x.d.error : x.d.detail || "error")); return; }
        say("production is now " + (x.d.production || x.d.to));
        refresh().catch(function () { /* the next poll reloads */ });
      }, function () { say("the server did not answer"); });
  }
  document.addEventListener("input", function (e) {
    if (e.target.id !== "admin-token") return;
    sessionStorage.setItem(KEY, e.target.value);
    restoreToken();
  });
  document.addEventListener("click", function (e) {
    var b = e.target.closest("button[data-admin]");
    if (!b || b.disabled) return;
    if (b.id === "rollback") admin("/v1/admin/rollback");
    else if (b.dataset.version) admin("/v1/admin/promote", { version: b.dataset.version, reason: "promoted from the dashboard" });
  });
  restoreToken();
})();
