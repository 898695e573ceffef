/* medtwin ward: draws the plotly figures embedded in the page and keeps the forecast live (server-sent events).
   Without JavaScript the page still shows every number in its tables. */
(function () {
  "use strict";
  var config = { responsive: true, displaylogo: false };

  function draw(id, figure) {
    var el = document.getElementById(id);
    if (!el || !window.Plotly || !figure) { return; }
    window.Plotly.react(el, figure.data, figure.layout, config);
  }

  function embedded(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function say(text) {
    var live = document.getElementById("live-status");
    if (live) { live.textContent = text; }
  }

  function refresh(chart) {
    var url = chart.getAttribute("data-figure-url");
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (payload) {
        if (String(payload.revision) === chart.getAttribute("data-revision")) { return; }  // nothing new
        draw("forecast-chart", payload.figure);
        if (payload.posterior) { draw("posterior-chart", payload.posterior); }
        chart.setAttribute("data-revision", String(payload.revision));
        var alarms = document.getElementById("alarms");
        if (alarms && payload.alarms) {
          alarms.innerHTML = "";
          (payload.alarms.length ? payload.alarms : ["No alarm."]).forEach(function (a) {
            var li = document.createElement("li"); li.textContent = a;
            if (payload.alarms.length) { li.className = "alarm"; }
            alarms.appendChild(li);
          });
        }
        if (payload.message) { say(payload.message); }
      })
      .catch(function (err) { say("Could not refresh the forecast: " + err.message); });
  }

  function live(chart) {
    var url = chart.getAttribute("data-events-url");
    if (!url || !window.EventSource) { return; }
    var source = new EventSource(url, { withCredentials: true });
    var handler = function () { refresh(chart); };
    ["measurement", "twin", "state", "alarm", "message"].forEach(function (kind) {
      source.addEventListener(kind, handler);
    });
    source.onopen = function () { chart.setAttribute("data-live", "open"); };
    source.onerror = function () { chart.setAttribute("data-live", "retrying"); };
  }

  function start() {
    if (!window.Plotly) { setTimeout(start, 50); return; }
    draw("forecast-chart", embedded("forecast-figure"));
    draw("posterior-chart", embedded("posterior-figure"));
    draw("forest-chart", embedded("forest-figure"));
    var chart = document.getElementById("forecast-chart");
    if (chart) { live(chart); }
  }

  document.addEventListener("htmx:afterRequest", function (evt) {
    var chart = document.getElementById("forecast-chart");
    if (chart && evt.detail && evt.detail.elt && evt.detail.elt.id === "measurement-form" && evt.detail.successful) {
      evt.detail.elt.reset();
    }
  });
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
}());
