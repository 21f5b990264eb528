// A stand-in for Office.js (Outlook's mailbox API) for running crmsync's task pane
// outside Outlook: in tests (the page's request for Microsoft's office.js answered
// with this) and in `make dev` (the console opens the pane with this script). It
// provides what the pane uses, with Outlook's names and callback shapes:
// Office.onReady, Office.auth.getAccessToken, Office.context.mailbox.item (a message
// or meeting, read or compose form), convertToRestId, addFileAttachmentFromBase64Async
// body.setSelectedDataAsync, and the dialog window (displayDialogAsync, messageParent)
// a pane signs in through where SSO gives no token. The item and the SSO token come from
// `window.__officeStub` (set before the page loads) or from the page address's
// `#office=<base64url JSON>`. What the pane did to the draft is kept in
// `window.__officeStub.attached` and `.inserted`, and shown at the page's foot.
(function () {
  "use strict";
  var config = window.__officeStub;
  var match = /[#&]office=([^&]+)/.exec(location.hash);
  if (!config && match) {
    var text = atob(match[1].replace(/-/g, "+").replace(/_/g, "/"));
    config = JSON.parse(decodeURIComponent(escape(text)));
  }
  config = config || {};
  config.attached = config.attached || [];
  config.inserted = config.inserted || [];
  window.__officeStub = config;

  function done(callback, value) {
    if (typeof callback === "function") setTimeout(function () { callback({ status: "succeeded", value: value }); }, 0);
  }
  function failed(callback, name, message) {
    if (typeof callback === "function") {
      setTimeout(function () { callback({ status: "failed", error: { name: name, message: message, code: 9999 } }); }, 0);
    }
  }
  function recipients(list) {  // a compose form's recipients field
    return { getAsync: function (options, callback) { done(callback || options, (list || []).slice()); } };
  }
  function trace(text) {
    var foot = document.getElementById("office-stub-log");
    if (!foot) {
      foot = document.createElement("footer");
      foot.id = "office-stub-log";
      foot.setAttribute("style", "border-top:1px dashed #8a8886;padding:6px 12px;font-size:12px;color:#605e5c");
      document.body.appendChild(foot);
    }
    var line = document.createElement("div");
    line.textContent = "Draft: " + text;
    foot.appendChild(line);
  }

  var given = config.item || null;
  var item = null;
  if (given) {
    item = { itemType: given.itemType, subject: given.subject || "" };
    var compose = given.mode === "compose";
    if (given.itemId) item.itemId = given.itemId;
    if (given.seriesId) item.seriesId = given.seriesId;
    if (given.itemType === "message") {
      if (compose) {
        item.to = recipients(given.to);
        item.cc = recipients(given.cc);
      } else {
        item.from = given.from;
        item.to = given.to || [];
        item.cc = given.cc || [];
        item.internetMessageId = given.internetMessageId || "";
      }
    } else if (compose) {
      item.organizer = { getAsync: function (options, callback) { done(callback || options, given.organizer); } };
      item.requiredAttendees = recipients(given.requiredAttendees);
      item.optionalAttendees = recipients(given.optionalAttendees);
      delete item.itemId;
      item.getItemIdAsync = function (options, callback) {
        if (given.itemId) done(callback || options, given.itemId);
        else failed(callback || options, "ItemNotSaved", "The item is not saved yet.");
      };
    } else {
      item.organizer = given.organizer;
      item.requiredAttendees = given.requiredAttendees || [];
      item.optionalAttendees = given.optionalAttendees || [];
    }
    if (compose) {
      item.addFileAttachmentFromBase64Async = function (base64, name, options, callback) {
        var size = atob(base64).length;
        if (size > 25 * 1024 * 1024) { failed(callback, "AttachmentSizeExceeded", "The attachment is too large."); return; }
        config.attached.push({ name: name, size: size, base64: base64 });
        trace("attached " + name + " (" + size + " bytes)");
        done(callback, "attachment-" + config.attached.length);
      };
      item.body = {
        setSelectedDataAsync: function (data, options, callback) {
          config.inserted.push(data);
          trace("inserted " + data);
          done(callback);
        },
      };
    }
  }

  window.Office = {
    HostType: { Outlook: "Outlook" },
    PlatformType: { OfficeOnline: "OfficeOnline" },
    CoercionType: { Html: "html", Text: "text" },
    AsyncResultStatus: { Succeeded: "succeeded", Failed: "failed" },
    EventType: { ItemChanged: "olkItemSelectedChanged", DialogMessageReceived: "dialogMessageReceived" },
    MailboxEnums: { ItemType: { Message: "message", Appointment: "appointment" }, RestVersion: { v1_0: "v1.0", v2_0: "v2.0", Beta: "beta" } },
    onReady: function (callback) {
      // given no item or token, this page is not in Outlook (as Office.js outside Office)
      var inOutlook = config.item !== undefined || config.token !== undefined;
      var info = { host: config.host !== undefined ? config.host : (inOutlook ? "Outlook" : null), platform: "OfficeOnline" };
      return new Promise(function (resolve) {
        setTimeout(function () { if (callback) callback(info); resolve(info); }, 0);
      });
    },
    auth: {
      getAccessToken: function () {
        if (!config.token) return Promise.reject({ code: 13001, name: "UserNotSignedIn", message: "No one is signed in." });
        return Promise.resolve(config.token);
      },
    },
    context: {
      requirements: { isSetSupported: function () { return true; } },
      ui: {
        // Outlook's dialog window: a window of its own, whose page answers the pane
        // with messageParent (this stand-in, loaded there too, passes it on)
        displayDialogAsync: function (url, options, callback) {
          var opened = window.open(url, "office-dialog", "popup,width=500,height=600");
          if (!opened) { failed(callback, "DialogBlocked", "The window was blocked."); return; }
          var handlers = [];
          window.__officeDialogMessage = function (message) {
            handlers.forEach(function (handler) { handler({ message: message, origin: location.origin }); });
          };
          done(callback, {
            addEventHandler: function (type, handler) { handlers.push(handler); },
            close: function () { opened.close(); },
          });
        },
        messageParent: function (message) {
          if (window.opener && window.opener.__officeDialogMessage) window.opener.__officeDialogMessage(message);
        },
      },
      mailbox: {
        item: item,
        // an EWS id to Graph's: Outlook's documented mapping of the id's characters
        convertToRestId: function (id) { return String(id).replace(/\//g, "-").replace(/\+/g, "_"); },
        addHandlerAsync: function (type, handler, callback) { done(callback); },
      },
    },
  };
})();
