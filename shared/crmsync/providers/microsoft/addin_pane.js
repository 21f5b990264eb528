// crmsync's task pane in Outlook (CTX-1): what the open message, meeting or draft has
// in the CRM, drawn from crmsync's answers; every request carries the Office SSO token
// Outlook gives the pane. Built with DOM calls only: nothing the CRM says is parsed as
// HTML.
(function () {
  "use strict";
  var endpoint = document.currentScript.src.replace(/\/pane\.js(\?.*)?$/, "");
  var pane = document.getElementById("pane");
  var auth = null;  // "Bearer <Office SSO token>", or "Crmsync <key>" from the web app
  var signInUrl = pane.getAttribute("data-sign-in");

  // -- drawing ------------------------------------------------------------------------
  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs[name];
      else if (name === "onclick") node.addEventListener("click", attrs[name]);
      else node.setAttribute(name, attrs[name]);
    });
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }
  function show() {
    pane.replaceChildren.apply(pane, Array.prototype.slice.call(arguments).filter(Boolean));
  }
  function link(url, text) {
    return url ? el("a", { href: url, target: "_blank", rel: "noopener", text: text }) : el("span", { text: text });
  }
  function note(text, kind) {
    return el("p", { class: kind || "note", role: "status", text: text });
  }
  function problem(found) {
    return el("div", { class: "problem", role: "alert" },
      el("strong", { text: found.reason }), found.next_step ? el("p", { text: found.next_step }) : null,
      found.unsigned ? signInButton() : null);
  }
  function signInButton() {  // where Office SSO is not available: the web app's sign-in
    return el("button", { type: "button", class: "primary", id: "sign-in", text: "Sign in to crmsync", onclick: function () {
      Office.context.ui.displayDialogAsync(signInUrl, { height: 60, width: 30 }, function (result) {
        if (result.status === "failed") {
          show(problem({ reason: "Outlook did not open the sign-in window", next_step: "Allow Outlook to open windows, then try again." }));
          return;
        }
        var dialog = result.value;
        dialog.addEventHandler(Office.EventType.DialogMessageReceived, function (answer) {
          auth = "Crmsync " + answer.message;
          dialog.close();
          start();
        });
      });
    } });
  }
  function blocked(found) {
    return el("section", { id: "blocked" },
      el("h2", { text: found.reason }), el("p", { text: found.next_step }),
      found.link ? link(found.link, found.label || "Open crmsync") : null);
  }
  function busy(text) { show(el("p", { text: text || "Asking the CRM…" })); }

  // -- asking crmsync -------------------------------------------------------------------
  function signIn() {
    return Office.auth.getAccessToken({ allowSignInPrompt: true, allowConsentPrompt: true })
      .then(function (found) { auth = "Bearer " + found; });
  }
  function ask(action, body, again) {
    var ready = auth ? Promise.resolve() : signIn().then(null, function (error) {
      error = error || {};
      throw { unsigned: true, code: error.code };
    });
    return ready.then(function () {
      return fetch(endpoint + "?do=" + encodeURIComponent(action), {
        method: "POST",
        headers: { "Authorization": auth, "Content-Type": "application/json" },
        body: JSON.stringify(body || {}),
      });
    }).then(function (answer) {
      if (answer.status === 401 && !again) { auth = null; return ask(action, body, true); }
      return answer.json().then(function (found) {
        if (answer.status === 401 && found.problem) found.problem.unsigned = true;
        return found;
      }, function () {
        return { problem: { reason: "crmsync did not answer", next_step: "Try again in a minute." } };
      });
    }, function (error) {
      if (error && error.unsigned) {  // Office gave no SSO token: the web app signs in
        return { problem: { reason: "Outlook could not sign you in to crmsync by itself" + (error.code ? " (" + error.code + ")" : ""),
          next_step: "Sign in with your Microsoft 365 account once; the pane remembers it while it is open.", unsigned: true } };
      }
      return { problem: { reason: "crmsync could not be reached", next_step: "Check your connection and open the pane again." } };
    });
  }
  function answered(found, draw) {
    if (found.problem) { show(problem(found.problem)); return; }
    if (found.view === "blocked") { show(blocked(found)); return; }
    draw(found);
  }

  // -- the open item ----------------------------------------------------------------------
  function item() { return Office.context.mailbox.item; }
  function restId(id) {
    return id ? Office.context.mailbox.convertToRestId(id, Office.MailboxEnums.RestVersion.v2_0) : "";
  }
  function pairs(list) {
    return (list || []).filter(Boolean).map(function (p) { return [p.displayName || "", p.emailAddress || ""]; });
  }
  function got(field) {  // a compose form's recipients (getAsync), or a read form's array
    return new Promise(function (resolve) {
      if (field && typeof field.getAsync === "function") {
        field.getAsync(function (result) { resolve(result.status === "failed" ? [] : [].concat(result.value || [])); });
      } else resolve([].concat(field || []));
    });
  }
  function composing(open) {
    var field = open.itemType === "appointment" ? open.requiredAttendees : open.to;
    return !!field && typeof field.getAsync === "function";
  }
  function start() {
    var open = item();
    if (!open) { show(el("p", { text: "Open a message or a meeting to see it in the CRM." })); return; }
    if (open.itemType === "appointment") { meeting(open); return; }
    if (composing(open)) { compose(open); return; }
    message(open);
  }

  // -- a message being read -----------------------------------------------------------------
  function message(open, notice) {
    busy();
    var people = pairs([open.from].concat(open.to || [], open.cc || []));
    var id = restId(open.itemId);
    ask("message", { item: id, participants: people }).then(function (found) {
      answered(found, function (shown) { drawMessage(open, id, shown, notice); });
    });
  }
  function drawMessage(open, id, shown, notice) {
    var sections = shown.people.map(function (who) { return person(open, id, who); });
    if (notice) sections.unshift(note(notice));
    if (!shown.people.length) sections.push(el("p", { text: "No one but you takes part in this message." }));
    if (shown.late.length) sections.push(note("The CRM is still looking up " + shown.late.join(", ") + "; open the pane again in a moment.", "problem"));
    if (shown.left_out) sections.push(el("p", { text: shown.left_out + " more participants are not shown." }));
    var filing = shown.files_mail ? fileSection(id, shown) : el("section", { id: "filing" },
      el("p", { text: "To file messages to the CRM, add mail to your connection on your crmsync page." }),
      link(shown.link, "Open crmsync"));
    show.apply(null, sections.concat([filing]));
  }
  function person(open, id, who) {
    var box = el("section", { class: "person", "data-address": who.address });
    var card = who.card;
    if (who.failed) {
      box.append(el("h2", { text: who.name || who.address }), el("p", { class: "detail", text: who.address }),
        note("The CRM could not be asked about " + who.address + ".", "problem"));
      return box;
    }
    if (!card) {
      box.append(el("h2", { text: who.name || who.address }), el("p", { class: "detail", text: who.address + " · not in the CRM" }),
        el("button", { type: "button", text: "Add to the CRM", onclick: function () { createForm(open, id, who, box); } }));
      return box;
    }
    box.append(el("h2", {}, link(card.url, card.name)),
      el("p", { class: "detail", text: [card.kind, card.title, who.address].filter(Boolean).join(" · ") }));
    if (card.account) box.append(el("p", {}, "Account: ", link(card.account.url, card.account.name)));
    if (card.opportunities.length) {
      box.append(el("h3", { text: "Open opportunities" }), el("ul", {}, ...card.opportunities.map(function (deal) {
        return el("li", {}, link(deal.url, deal.name), deal.detail ? " · " + deal.detail : "");
      })));
    }
    if (card.history.length) {
      box.append(el("h3", { text: "Latest history" }), el("ul", {}, ...card.history.map(function (entry) {
        return el("li", { text: [entry.date, entry.subject].filter(Boolean).join(" · ") });
      })));
    }
    if (card.fields.length) {
      box.append(el("h3", { text: "Fields" }), el("ul", {}, ...card.fields.map(function (pair) {
        return el("li", { text: pair[0] + ": " + pair[1] });
      })));
    }
    if (who.more) box.append(el("p", { class: "detail", text: who.more + " more people in the CRM have this address." }));
    return box;
  }
  function createForm(open, id, who, box) {
    var shown = box.querySelector("form.create");
    if (shown) { shown.remove(); return; }  // the button shows and hides one form
    var names = ["first_name", "last_name", "company", "title"];
    var labels = { first_name: "First name", last_name: "Last name", company: "Company", title: "Title" };
    var inputs = {};
    var form = el("form", { class: "create" }, ...names.map(function (name) {
      inputs[name] = el("input", { type: "text", name: name, value: (who.prefill || {})[name] || "" });
      return el("label", {}, labels[name], inputs[name]);
    }));
    function create(kind) {
      var fields = {};
      names.forEach(function (name) { fields[name] = inputs[name].value; });
      ask("create", { kind: kind, address: who.address, fields: fields, item: id || open.subject || "" }).then(function (found) {
        if (found.problem) { form.append(problem(found.problem)); return; }
        message(open, found.note);
      });
    }
    form.append(el("button", { type: "button", class: "primary", text: "Create contact", onclick: function () { create("contact"); } }),
      el("button", { type: "button", text: "Create lead", onclick: function () { create("lead"); } }));
    box.append(form);
  }
  function fileSection(id, shown) {
    var list = el("div", { id: "records" });
    var chosen = {};
    function offer(ref, name, detail, ticked) {
      if (chosen[ref]) return;
      var box = el("input", { type: "checkbox", name: "records", value: ref });
      box.checked = !!ticked;
      chosen[ref] = { box: box, name: name };
      list.append(el("label", {}, box, " " + name, detail ? el("span", { class: "detail", text: " · " + detail }) : null));
    }
    shown.people.forEach(function (who) { if (who.card) offer(who.card.ref, who.card.name, who.card.kind, true); });
    var text = el("input", { type: "text", id: "search", "aria-label": "Find records in the CRM", placeholder: "Find a contact or lead" });
    var result = el("div", { id: "filing-result" });
    function search() {
      ask("search", { text: text.value }).then(function (found) {
        if (found.problem) { result.replaceChildren(problem(found.problem)); return; }
        if (text.value.trim().length < 2) result.replaceChildren(note("Type two letters at least.", "problem"));
        else if (!found.people.length) result.replaceChildren(note("No contact or lead has " + JSON.stringify(text.value.trim()) + " in its name or address.", "problem"));
        else result.replaceChildren();
        found.people.forEach(function (p) { offer(p.ref, p.name, p.detail, false); });
      });
    }
    function file() {
      var refs = Object.keys(chosen).filter(function (ref) { return chosen[ref].box.checked; });
      var names = {};
      refs.forEach(function (ref) { names[ref] = chosen[ref].name; });
      if (!refs.length) {
        result.replaceChildren(note(Object.keys(chosen).length
          ? "Tick the records to file the message to."
          : "Find a contact or lead above to file the message to, or add the person to the CRM first.", "problem"));
        return;
      }
      ask("file", { item: id, records: refs, names: names }).then(function (found) {
        result.replaceChildren(found.problem ? problem(found.problem) : note(found.note));
      });
    }
    text.addEventListener("keydown", function (event) { if (event.key === "Enter") { event.preventDefault(); search(); } });
    return el("section", { id: "filing" }, el("h2", { text: "File to CRM" }), list,
      text, el("button", { type: "button", text: "Find", onclick: search }),
      el("button", { type: "button", class: "primary", text: "File to CRM", onclick: file }), result);
  }

  // -- a meeting ------------------------------------------------------------------------------
  function meetingIds(open) {
    return new Promise(function (resolve) {
      if (open.itemId) { resolve([restId(open.itemId), restId(open.seriesId)]); return; }
      if (typeof open.getItemIdAsync !== "function") { resolve([]); return; }
      open.getItemIdAsync(function (result) {  // an organiser's saved meeting
        resolve(result.status === "failed" ? [] : [restId(result.value), restId(open.seriesId)]);
      });
    });
  }
  function meeting(open, notice) {
    busy();
    Promise.all([meetingIds(open), got(open.organizer), got(open.requiredAttendees), got(open.optionalAttendees)])
      .then(function (parts) {
        var attendees = pairs(parts[1].concat(parts[2], parts[3]));
        var events = parts[0].filter(Boolean);
        return ask("meeting", { events: events, attendees: attendees }).then(function (found) {
          answered(found, function (shown) { drawMeeting(open, shown, notice); });
        });
      });
  }
  function drawMeeting(open, shown, notice) {
    var join = shown.joinable.map(function (user) {
      var box = el("input", { type: "checkbox", name: "join", value: user.id });
      return el("label", {}, box, " " + user.name);
    });
    var about = shown.offered.map(function (record) {
      var box = el("input", { type: "checkbox", name: "about", value: record.ref });
      return el("label", {}, box, " " + record.name + " (" + record.kind + ")");
    });
    var custom = shown.custom.map(function (field) {
      return el("label", {}, field.name, el("input", { type: "text", name: "custom", "data-name": field.name, value: field.value }));
    });
    var result = el("div", { id: "meeting-result" }, notice ? note(notice) : null);
    function save() {
      var ticked = function (name) {
        return Array.prototype.filter.call(pane.querySelectorAll("input[name=" + name + "]"), function (b) { return b.checked; })
          .map(function (b) { return b.value; });
      };
      var fields = {};
      pane.querySelectorAll("input[name=custom]").forEach(function (input) { fields[input.dataset.name] = input.value; });
      ask("meeting_save", { activity: shown.activity, version: shown.version, join: ticked("join"), about: ticked("about"), custom: fields })
        .then(function (found) {
          if (found.problem) { result.replaceChildren(problem(found.problem)); return; }
          meeting(open, found.note);
        });
    }
    show(el("section", { id: "activity" },
      el("h2", { text: shown.subject || "(no subject)" }),
      el("p", { class: "detail", text: "Led by " + shown.leader }),
      el("h3", { text: "Colleagues" }),
      el("ul", {}, ...shown.members.map(function (m) { return el("li", { text: m }); })),
      shown.members.length ? null : el("p", { class: "detail", text: "No colleague takes part yet." }),
      el("h3", { text: "About" }),
      el("ul", {}, ...shown.regarding.map(function (r) { return el("li", { text: r.name + " (" + r.kind + ")" }); })),
      shown.regarding.length ? null : el("p", { class: "detail", text: "Not related to a record yet." })),
      join.length ? el("section", { id: "join" }, el("h3", { text: "Add colleagues" }), ...join) : null,
      about.length ? el("section", { id: "about" }, el("h3", { text: "Relate to" }), ...about) : null,
      custom.length ? el("section", { id: "custom" }, el("h3", { text: "Fields" }), ...custom) : null,
      el("section", {}, el("button", { type: "button", class: "primary", text: "Save to the CRM", onclick: save }), result));
  }

  // -- a message being written ------------------------------------------------------------------
  function size(bytes) {
    if (bytes < 1024) return bytes + " bytes";
    if (bytes < 1024 * 1024) return Math.round(bytes / 1024) + " KB";
    return (bytes / 1024 / 1024).toFixed(1) + " MB";
  }
  function compose(open) {
    var text = el("input", { type: "text", id: "documents-search", "aria-label": "Find CRM documents", placeholder: "Find a CRM document" });
    var list = el("div", { id: "documents" });
    var result = el("div", { id: "attach-result" });
    function attach(doc) {
      result.replaceChildren(el("p", { text: "Getting " + doc.name + " from the CRM…" }));
      ask("document", { id: doc.id }).then(function (found) {
        if (found.problem) { result.replaceChildren(problem(found.problem)); return; }
        var done = function (outcome, success) {
          result.replaceChildren(outcome.status === "failed"
            ? note("Outlook did not take " + found.name + ": " + ((outcome.error || {}).message || "no reason given"), "problem")
            : note(success));
        };
        if (found.base64) {
          open.addFileAttachmentFromBase64Async(found.base64, found.name, { isInline: false }, function (outcome) {
            done(outcome, "Attached " + found.name);
          });
        } else {
          var anchor = el("a", { href: found.link, text: found.name });
          open.body.setSelectedDataAsync(anchor.outerHTML, { coercionType: Office.CoercionType.Html }, function (outcome) {
            done(outcome, found.name + " is too large to attach: a link to it is in the message (it opens for 30 days)");
          });
        }
      });
    }
    function search() {
      ask("documents", { text: text.value }).then(function (found) {
        if (found.problem) { list.replaceChildren(problem(found.problem)); return; }
        if (text.value.trim().length < 2) { list.replaceChildren(note("Type two letters at least.", "problem")); return; }
        if (!found.documents.length) { list.replaceChildren(note("No CRM document you may see has " + JSON.stringify(text.value.trim()) + " in its name.", "problem")); return; }
        list.replaceChildren(...found.documents.map(function (doc) {
          return el("p", { class: "document" }, doc.name + " ", el("span", { class: "detail", text: size(doc.size) + " " }),
            el("button", { type: "button", text: "Attach", "aria-label": "Attach " + doc.name, onclick: function () { attach(doc); } }));
        }));
      });
    }
    text.addEventListener("keydown", function (event) { if (event.key === "Enter") { event.preventDefault(); search(); } });
    show(el("section", { id: "compose" }, el("h2", { text: "CRM documents" }),
      el("p", { class: "detail", text: "Attach a document from the CRM to this message." }),
      text, el("button", { type: "button", text: "Find", onclick: search }), list, result));
  }

  // -- starting -------------------------------------------------------------------------------------
  if (typeof Office === "undefined") {
    show(el("h2", { text: "This is crmsync's pane for Outlook" }),
      el("p", { text: "Open a message or a meeting in Outlook and choose crmsync in its toolbar." }));
    return;
  }
  Office.onReady(function (info) {
    if (!info || info.host !== Office.HostType.Outlook) {
      show(el("h2", { text: "This is crmsync's pane for Outlook" }),
        el("p", { text: "Open a message or a meeting in Outlook and choose crmsync in its toolbar." }));
      return;
    }
    if (Office.context.mailbox.addHandlerAsync && Office.EventType && Office.EventType.ItemChanged) {
      Office.context.mailbox.addHandlerAsync(Office.EventType.ItemChanged, start);  // a pinned pane
    }
    start();
  });
})();
