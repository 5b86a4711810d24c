/* cqrs-scheduling dashboard: live regions and action buttons, without a framework and without reloading the page.
 *
 * Live regions: every element with data-fragment-url is re-fetched every <body data-refresh-seconds> seconds
 * (not while the tab is hidden; at once when it is shown again) and its content is replaced by the fragment, which
 * the server renders with the same template as the full page. Focus stays where it was: the element that had it is
 * found again by id; if it is gone, the region itself takes focus. Open <details> stay open.
 *
 * Actions: a <button data-action="URL"> POSTs to the JSON API with the page's CSRF token (from
 * <meta name="csrf-token">) in the X-CSRF-Token header, announces the result in the role="status" region, and
 * refreshes the live regions at once.
 */
(function () {
  "use strict";

  var body = document.body;
  var seconds = Number(body.getAttribute("data-refresh-seconds"));
  var period = (isFinite(seconds) && seconds > 0 ? seconds : 3) * 1000;
  var tokenMeta = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = tokenMeta ? tokenMeta.getAttribute("content") : "";
  var announcer = document.getElementById("announcer");
  var timer = null;
  var clearing = null;
  var lastHtml = new WeakMap();
  var requests = new WeakMap();
  var stopped = false;

  function announce(message) {
    if (!announcer) {
      return;
    }
    // Emptied first, so that the same message twice in a row is announced twice.
    announcer.textContent = "";
    window.clearTimeout(clearing);
    window.setTimeout(function () {
      announcer.textContent = message;
      // Once read, the message goes away so that it does not hide the page for good.
      clearing = window.setTimeout(function () {
        if (announcer.textContent === message) {
          announcer.textContent = "";
        }
      }, 15000);
    }, 50);
  }

  function swap(region, html) {
    if (lastHtml.get(region) === html) {
      return;
    }
    var active = document.activeElement;
    var focusId = active && active !== region && region.contains(active) ? active.id : null;
    var hadFocus = active === region || (active && region.contains(active));
    var open = [];
    region.querySelectorAll("details[open][id]").forEach(function (details) {
      open.push(details.id);
    });
    region.innerHTML = html;
    lastHtml.set(region, html);
    open.forEach(function (id) {
      var details = document.getElementById(id);
      if (details && details.tagName === "DETAILS") {
        details.open = true;
      }
    });
    if (hadFocus) {
      var again = focusId ? document.getElementById(focusId) : null;
      (again && region.contains(again) ? again : region).focus({ preventScroll: true });
    }
    region.dispatchEvent(new CustomEvent("dashboard:updated", { bubbles: true }));
  }

  function refreshRegion(region) {
    var url = region.getAttribute("data-fragment-url");
    // Only the latest request's answer is used: an older one arriving late would bring back stale content.
    var mine = (requests.get(region) || 0) + 1;
    requests.set(region, mine);
    // A request that hangs must not stop the updates: it is given up after a while and the next tick tries again.
    var controller = new AbortController();
    var giveUp = window.setTimeout(function () {
      controller.abort();
    }, Math.max(period, 10000));
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" }, signal: controller.signal })
      .then(function (response) {
        if (response.status === 401) {
          stopped = true;
          announce("Your session has ended: reload the page to sign in again. Live updates are paused.");
          return null;
        }
        if (!response.ok) {
          return null;
        }
        return response.text();
      })
      .then(function (html) {
        if (html !== null && requests.get(region) === mine) {
          swap(region, html);
        }
      })
      .catch(function () {
        /* The server is away for a moment: the next tick tries again. */
      })
      .then(function () {
        window.clearTimeout(giveUp);
      });
  }

  function refreshAll() {
    var regions = document.querySelectorAll("[data-fragment-url]");
    return Promise.all(Array.prototype.map.call(regions, refreshRegion));
  }

  function schedule() {
    window.clearTimeout(timer);
    if (stopped || document.hidden) {
      return;
    }
    timer = window.setTimeout(function () {
      refreshAll().then(schedule);
    }, period);
  }

  function describeError(response, payload) {
    var detail = payload && payload.detail;
    if (typeof detail === "string") {
      return detail;
    }
    if (detail && typeof detail.message === "string") {
      return detail.message;
    }
    if (Array.isArray(detail) && detail.length && detail[0].msg) {
      return detail[0].msg;
    }
    return "the server answered " + response.status + " " + response.statusText;
  }

  function describeSuccess(button, payload) {
    if (button.hasAttribute("data-done")) {
      return button.getAttribute("data-done");
    }
    if (payload && Array.isArray(payload.requeued)) {
      var n = payload.requeued.length;
      return "Requeued " + n + " entr" + (n === 1 ? "y" : "ies") + ".";
    }
    return "Done.";
  }

  function act(button) {
    if (button.getAttribute("aria-busy") === "true") {
      return;
    }
    button.setAttribute("aria-busy", "true");
    var label = button.textContent.trim();
    fetch(button.getAttribute("data-action"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken, Accept: "application/json", "Content-Type": "application/json" },
      body: button.getAttribute("data-body") || "{}",
    })
      .then(function (response) {
        return response
          .json()
          .catch(function () {
            return null;
          })
          .then(function (payload) {
            announce(response.ok ? describeSuccess(button, payload) : label + ": " + describeError(response, payload));
          });
      })
      .catch(function () {
        announce(label + ": the dashboard could not be reached.");
      })
      .then(function () {
        button.removeAttribute("aria-busy");
        return refreshAll();
      })
      .then(schedule);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-action]") : null;
    if (button) {
      event.preventDefault();
      act(button);
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (document.hidden || stopped) {
      window.clearTimeout(timer);
    } else {
      refreshAll().then(schedule);
    }
  });

  // Phone width (dashboard.css): each cell shows its column's name from data-label; a cell without one gets the
  // text of its table's column header here, so every table collapses into readable rows.
  function labelCells(root) {
    root.querySelectorAll("table").forEach(function (table) {
      var names = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
        return th.textContent.trim();
      });
      table.querySelectorAll("tbody tr").forEach(function (row) {
        Array.prototype.forEach.call(row.children, function (cell, index) {
          if (!cell.hasAttribute("data-label") && names[index] && !cell.hasAttribute("colspan")) {
            cell.setAttribute("data-label", names[index]);
          }
        });
      });
    });
  }

  document.addEventListener("dashboard:updated", function (event) {
    labelCells(event.target);
  });
  labelCells(document);

  schedule();
})();
