// The desk's live counts: while an issue is approved or going out, its counts by state are read
// from the desk's own JSON every two seconds and written into the page, without a reload. It
// stops once the issue is sent. No library, nothing fetched from elsewhere (the CSP allows none).
(function () {
  "use strict";
  var panel = document.getElementById("progress");
  if (!panel || panel.getAttribute("data-live") !== "true") return;
  var url = panel.getAttribute("data-url");

  function show(data) {
    panel.querySelectorAll("[data-count]").forEach(function (cell) {
      cell.textContent = String(data.counts[cell.getAttribute("data-count")] || 0);
    });
    panel.querySelector("[data-total]").textContent = String(data.total);
    panel.querySelector("[data-status]").textContent = data.status;
    var done = data.total ? (data.counts.submitted || 0) / data.total : 0;
    var meter = panel.querySelector("progress");
    meter.max = data.total || 1;
    meter.value = data.counts.submitted || 0;
    meter.textContent = Math.round(done * 100) + "%";
    return data.done;
  }

  function tick() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data && show(data)) { panel.setAttribute("data-live", "false"); return; }
        window.setTimeout(tick, 2000);
      })
      .catch(function () { window.setTimeout(tick, 5000); });
  }
  tick();
})();
