/*
 * faucet's reconnect script for Shiny (served at __faucet__/reconnect.js; faucet puts a
 * tag for it in every page of a shiny or quarto-shiny app). docs/shiny.md has the why.
 *
 * Shiny calls Shiny.createSocket() for its WebSocket; this one survives a dropped
 * connection. It opens Shiny's usual URL with sessionId (random, for the page's life),
 * attempt and received (faucet's messages had so far). When the connection drops it
 * reconnects with backoff, and faucet splices it onto the same R session: faucet says
 * how many of our messages it has ("resume:N") and we send the rest again; it sends
 * what we have not had. Shiny never sees the drop. "ping"/"pong" go both ways: a pong
 * acknowledges everything sent before its ping, and silence for heartbeatTimeout means
 * the connection is dead. Close codes from faucet: 4001 (session gone) and 4002 (its R
 * process died) reload the page for a fresh session; 1012 (faucet restarting) keeps
 * trying until faucet is back. A close from the app itself (1000) goes to Shiny.
 */
(function () {
  "use strict";
  var settings = window.FAUCET_RECONNECT || {};
  var HEARTBEAT_TIMEOUT = settings.heartbeatTimeout || 20000;
  var GIVE_UP_AFTER = 15 * 60 * 1000; // ms of failed reconnects before Shiny is told
  var NOTICE_AFTER = 1000; // ms down before the "Reconnecting" notice shows
  var NO_HEARTBEAT = 4000, SESSION_GONE = 4001, WORKER_LOST = 4002;
  var APP_CLOSED = 1000, RESTARTING = 1012;

  // The session's id is a bearer secret: only a cryptographic generator will do.
  function randomId() {
    var c = window.crypto;
    if (typeof c.randomUUID === "function") return c.randomUUID();
    var b = c.getRandomValues(new Uint8Array(16)), hex = [];
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10
    for (var i = 0; i < 16; i++) hex.push((b[i] + 0x100).toString(16).slice(1));
    return hex.slice(0, 4).join("") + "-" + hex.slice(4, 6).join("") + "-" +
      hex.slice(6, 8).join("") + "-" + hex.slice(8, 10).join("") + "-" +
      hex.slice(10).join("");
  }

  // The URL Shiny itself would open: the page's path, then "websocket/".
  function shinyUrl() {
    var path = window.location.pathname;
    if (!/^([$#!&-;=?-[\]_a-z~]|%[0-9a-fA-F]{2})+$/.test(path)) path = encodeURI(path);
    if (!/\/$/.test(path)) path += "/";
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + path + "websocket/";
  }

  function Notice() {
    this._el = null;
  }
  Notice.prototype.show = function (text) {
    if (!this._el) {
      var el = document.createElement("div");
      el.id = "faucet-reconnecting";
      el.setAttribute("role", "status");
      el.style.cssText = "position:fixed;bottom:0;left:8px;padding:4px 10px;z-index:10001;" +
        "background:rgba(60,60,60,.85);color:#fff;font:13px sans-serif;" +
        "border-radius:4px 4px 0 0";
      this._el = el;
    }
    this._el.textContent = text;
    if (!this._el.parentNode && document.body) document.body.appendChild(this._el);
  };
  Notice.prototype.hide = function () {
    if (this._el && this._el.parentNode) this._el.parentNode.removeChild(this._el);
  };

  function FaucetSocket(url) {
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this.binaryType = "arraybuffer";
    this.sessionId = randomId();
    this._url = url;
    this._attempt = 0;
    this._received = 0; // faucet's data messages had, this session
    this._sent = 0; // our data messages, this session
    this._unacked = []; // our last messages not known to have reached faucet
    this._pings = []; // this._sent at each ping of ours not yet answered
    this._opened = false; // Shiny's onopen has run
    this._live = false; // the current connection is open (and resumed)
    this._done = false; // given up, or closed for good
    this._downSince = null;
    this._failures = 0;
    this._restarting = false; // faucet said it is restarting (1012) since we were last up
    this._notice = new Notice();
    this._connect();
    var self = this;
    window.addEventListener("online", function () {
      if (!self._live && !self._done && self._retryTimer) {
        clearTimeout(self._retryTimer);
        self._connect();
      }
    });
  }

  FaucetSocket.prototype._connect = function () {
    var self = this;
    this._retryTimer = null;
    var resuming = this._attempt > 0;
    var ws = new WebSocket(this._url + "?sessionId=" + this.sessionId + "&attempt=" +
                           this._attempt + "&received=" + this._received);
    this._attempt++;
    ws.binaryType = this.binaryType;
    this._ws = ws;
    this._pings = [];
    ws.onopen = function () {
      self._watch(ws);
      if (!resuming) self._up(); // a new session: no resume message comes
    };
    ws.onmessage = function (event) {
      if (ws !== self._ws) return;
      self._watch(ws);
      var data = event.data;
      if (data === "ping") {
        ws.send("pong");
        if (self._unacked.length && self._pings.indexOf(self._sent) < 0) {
          self._pings.push(self._sent);
          ws.send("ping");
        }
      } else if (data === "pong") {
        if (self._pings.length) self._acked(self._pings.shift());
      } else if (typeof data === "string" && data.indexOf("resume:") === 0) {
        self._resume(parseInt(data.slice(7), 10));
      } else {
        self._received++;
        if (self.onmessage) self.onmessage(event);
      }
    };
    ws.onclose = function (event) {
      self._dropped(ws, event.code, event);
    };
  };

  // Any message proves the connection alive; silence for HEARTBEAT_TIMEOUT ends it.
  FaucetSocket.prototype._watch = function (ws) {
    var self = this;
    clearTimeout(this._watchdog);
    this._watchdog = setTimeout(function () {
      ws.onclose = ws.onmessage = null;
      try { ws.close(NO_HEARTBEAT, "no heartbeat"); } catch (e) { /* already closed */ }
      self._dropped(ws, NO_HEARTBEAT, null);
    }, HEARTBEAT_TIMEOUT);
  };

  FaucetSocket.prototype._acked = function (upTo) {
    var first = this._sent - this._unacked.length + 1;
    if (upTo >= first) this._unacked.splice(0, upTo - first + 1);
  };

  FaucetSocket.prototype._resume = function (forwarded) {
    this._acked(forwarded);
    for (var i = 0; i < this._unacked.length; i++) this._ws.send(this._unacked[i]);
    this._up();
  };

  FaucetSocket.prototype._up = function () {
    this._live = true;
    this._downSince = null;
    this._failures = 0;
    this._restarting = false;
    this._notice.hide();
    if (!this._opened) {
      this._opened = true;
      if (this.onopen) this.onopen({ type: "open", target: this });
    }
  };

  FaucetSocket.prototype._dropped = function (ws, code, event) {
    if (ws !== this._ws || this._done) return;
    var self = this;
    this._live = false;
    clearTimeout(this._watchdog);
    if (code === SESSION_GONE || code === WORKER_LOST) {
      this._done = true;
      this._notice.show("Reloading\u2026");
      window.location.reload();
      return;
    }
    if (code === APP_CLOSED) return this._giveUp(event);
    if (code === RESTARTING) this._restarting = true;
    var now = Date.now();
    if (this._downSince === null) this._downSince = now;
    if (now - this._downSince > GIVE_UP_AFTER) return this._giveUp(event);
    var delay = Math.min(5000, 250 * Math.pow(2, this._failures++)) * (0.5 + Math.random() / 2);
    setTimeout(function () {
      if (!self._live && !self._done) {
        self._notice.show(self._restarting ? "Restarting\u2026" : "Reconnecting\u2026");
      }
    }, NOTICE_AFTER);
    this._retryTimer = setTimeout(function () { self._connect(); }, delay);
  };

  FaucetSocket.prototype._giveUp = function (event) {
    this._done = true;
    this._notice.hide();
    if (this.onclose) this.onclose(event || { type: "close", code: 1006, reason: "" });
  };

  FaucetSocket.prototype.send = function (data) {
    this._sent++;
    this._unacked.push(data);
    if (this._live) this._ws.send(data);
  };

  FaucetSocket.prototype.close = function (code, reason) {
    this._done = true;
    clearTimeout(this._watchdog);
    if (this._ws) this._ws.close(code, reason);
  };

  // Shiny queues its messages while readyState is 0 and sends them from onopen; after
  // that the socket stays open for Shiny until this script gives up.
  Object.defineProperty(FaucetSocket.prototype, "readyState", {
    get: function () {
      if (this._done) return 3;
      return this._opened ? 1 : 0;
    }
  });

  window.Shiny = window.Shiny || {};
  window.Shiny.createSocket = function () {
    return new FaucetSocket(shinyUrl());
  };
})();
