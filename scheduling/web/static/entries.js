/* cqrs-scheduling dashboard, Entries page: row selection and bulk actions (requeue, cancel, dismiss).
 *
 * Selection: the ids checked are kept here, so the live region's refresh (dashboard.js swaps its HTML) keeps them
 * checked. Bulk actions POST to /api/entries/bulk (the <section id="bulk"> names the URL, the search as the API
 * names it, and the batch size):
 *  - a selection: the confirmation states how many are selected; one request acts on them (the server batches and
 *    audits them);
 *  - the whole search result: a dry run counts what the action would take; the confirmation states that count; then
 *    one request per batch, each passing the count the previous answer left ("expected_count", so the server refuses
 *    when more entries match than were confirmed) and never more in all than the count confirmed; a progress bar
 *    follows the batches.
 */
(function () {
  "use strict";

  var bulk = document.getElementById("bulk");
  if (!bulk) {
    return; // read-only mode: no selection, no actions
  }
  var api = bulk.getAttribute("data-api");
  var filter = JSON.parse(bulk.getAttribute("data-filter") || "{}");
  var described = bulk.getAttribute("data-described") || "every entry";
  var batch = Number(bulk.getAttribute("data-batch")) || 200;
  var maxSelection = Number(bulk.getAttribute("data-max-selection")) || 1000;
  var tokenMeta = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = tokenMeta ? tokenMeta.getAttribute("content") : "";
  var live = document.getElementById("live");
  var confirmBox = document.getElementById("bulk-confirm");
  var question = document.getElementById("bulk-question");
  var yes = document.getElementById("bulk-confirm-yes");
  var no = document.getElementById("bulk-confirm-no");
  var run = document.getElementById("bulk-run");
  var progress = document.getElementById("bulk-progress");
  var progressText = document.getElementById("bulk-progress-text");
  var countText = document.getElementById("bulk-selected-count");
  var selected = new Set();
  var pending = null; // the action waiting for confirmation
  var busy = false;

  var SOURCE = { requeue: "FAILED", cancel: "PENDING", dismiss: "FAILED" };
  var VERB = { requeue: "Requeue", cancel: "Cancel", dismiss: "Dismiss" };
  var DONE = { requeue: "Requeued", cancel: "Cancelled", dismiss: "Dismissed" };

  function number(n) {
    return Number(n).toLocaleString("en-US");
  }

  function entries(n) {
    return number(n) + (n === 1 ? " entry" : " entries");
  }

  function announce(message) {
    var announcer = document.getElementById("announcer");
    if (announcer) {
      announcer.textContent = "";
      window.setTimeout(function () {
        announcer.textContent = message;
      }, 50);
    }
  }

  function post(body) {
    return fetch(api, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken, Accept: "application/json", "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response
        .json()
        .catch(function () {
          return null;
        })
        .then(function (payload) {
          if (!response.ok) {
            var detail = payload && payload.detail;
            if (Array.isArray(detail) && detail.length && detail[0].msg) {
              detail = detail[0].msg;
            }
            throw new Error(typeof detail === "string" ? detail : "the server answered " + response.status);
          }
          return payload;
        });
    });
  }

  // -- selection --------------------------------------------------------------------------------------------

  function boxes() {
    return live ? live.querySelectorAll("input.select-entry") : [];
  }

  function showSelection() {
    var n = selected.size;
    countText.textContent = n ? entries(n) + " selected." : "No entry selected.";
    bulk.querySelectorAll('button[data-scope="selection"]').forEach(function (button) {
      button.disabled = n === 0 || busy;
    });
    var all = document.getElementById("entries-select-page");
    if (all) {
      var list = Array.prototype.slice.call(boxes());
      all.checked = list.length > 0 && list.every(function (box) {
        return box.checked;
      });
    }
  }

  function restoreSelection() {
    boxes().forEach(function (box) {
      box.checked = selected.has(box.value);
    });
    showSelection();
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.id === "entries-select-page") {
      boxes().forEach(function (box) {
        box.checked = target.checked;
        if (target.checked && selected.size < maxSelection) {
          selected.add(box.value);
        } else if (!target.checked) {
          selected.delete(box.value);
        }
      });
      restoreSelection();
    } else if (target.classList && target.classList.contains("select-entry")) {
      if (target.checked && selected.size < maxSelection) {
        selected.add(target.value);
      } else {
        selected.delete(target.value);
        target.checked = false;
      }
      showSelection();
    }
  });

  if (live) {
    live.addEventListener("dashboard:updated", restoreSelection);
  }

  // -- confirmation and progress ----------------------------------------------------------------------------

  function ask(text, confirmLabel, action) {
    pending = action;
    question.textContent = text;
    yes.textContent = confirmLabel;
    confirmBox.hidden = false;
    yes.focus();
  }

  function closeQuestion() {
    pending = null;
    confirmBox.hidden = true;
  }

  function setBusy(value) {
    busy = value;
    bulk.querySelectorAll("button[data-bulk]").forEach(function (button) {
      button.disabled = value;
    });
    showSelection();
  }

  function report(text, done, total) {
    run.hidden = false;
    progress.max = Math.max(1, total);
    progress.value = Math.min(done, total);
    progressText.textContent = text;
  }

  function refreshList() {
    if (!live) {
      return Promise.resolve();
    }
    return fetch(live.getAttribute("data-fragment-url"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          live.innerHTML = html;
          restoreSelection();
        }
      })
      .catch(function () {
        /* the next refresh of dashboard.js brings it */
      });
  }

  function finish(message) {
    progressText.textContent = message;
    announce(message);
    setBusy(false);
    return refreshList();
  }

  function runSelection(action, ids) {
    setBusy(true);
    report(VERB[action] + ": " + entries(ids.length) + " selected…", 0, ids.length);
    post({ action: action, ids: ids })
      .then(function (result) {
        report("", result.done.length + result.refused.length, ids.length);
        selected.clear();
        var left = result.refused.length
          ? "; " + entries(result.refused.length) + " left alone (not " + SOURCE[action] + ")"
          : "";
        return finish(DONE[action] + " " + entries(result.done.length) + " of " + number(ids.length) + " selected" + left + ".");
      })
      .catch(function (error) {
        return finish(VERB[action] + " failed: " + error.message);
      });
  }

  function runFilter(action, confirmed) {
    var done = 0;
    setBusy(true);
    report(VERB[action] + ": 0 of " + entries(confirmed) + "…", 0, confirmed);

    function step(expected) {
      var budget = confirmed - done;
      if (budget <= 0 || expected <= 0) {
        return finish(DONE[action] + " " + number(done) + " of " + entries(confirmed) + ".");
      }
      return post({
        action: action,
        filter: filter,
        expected_count: expected,
        limit: Math.min(batch, budget),
      }).then(function (result) {
        done += result.done.length;
        report(DONE[action] + " " + number(done) + " of " + entries(confirmed) + "…", done, confirmed);
        if (result.done.length === 0) {
          return finish(DONE[action] + " " + number(done) + " of " + entries(confirmed) + "; the others changed meanwhile.");
        }
        return step(result.remaining);
      });
    }

    step(confirmed).catch(function (error) {
      return finish(VERB[action] + " stopped after " + entries(done) + ": " + error.message);
    });
  }

  function prepare(action, scope) {
    if (busy) {
      return;
    }
    run.hidden = true;
    if (scope === "selection") {
      var ids = Array.from(selected);
      ask(
        VERB[action] + " " + entries(ids.length) + " selected? Only " + SOURCE[action] + " ones are " +
          DONE[action].toLowerCase() + "; the others are left alone. It is recorded in the audit trail.",
        VERB[action] + " " + entries(ids.length),
        function () {
          runSelection(action, ids);
        }
      );
      return;
    }
    post({ action: action, filter: filter, dry_run: true })
      .then(function (preview) {
        if (preview.matched === 0) {
          report("No " + SOURCE[action] + " entry matches this search: nothing to " + action + ".", 0, 1);
          return;
        }
        ask(
          VERB[action] + " " + entries(preview.matched) + " (" + SOURCE[action] + ", matching " + described +
            ")? They are " + DONE[action].toLowerCase() + " in batches of " + number(batch) +
            ", each recorded in the audit trail.",
          VERB[action] + " " + entries(preview.matched),
          function () {
            runFilter(action, preview.matched);
          }
        );
      })
      .catch(function (error) {
        report(VERB[action] + ": " + error.message, 0, 1);
      });
  }

  bulk.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button") : null;
    if (!button) {
      return;
    }
    if (button.hasAttribute("data-bulk")) {
      prepare(button.getAttribute("data-bulk"), button.getAttribute("data-scope"));
    } else if (button === yes && pending) {
      var action = pending;
      closeQuestion();
      action();
    } else if (button === no) {
      closeQuestion();
    }
  });

  restoreSelection();
  // Linked from the dead-letters page ("Requeue all failed of this type…"): ask at once, stating the count.
  if (window.location.hash === "#requeue-all") {
    prepare("requeue", "filter");
  }
})();
