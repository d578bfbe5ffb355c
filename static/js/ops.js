/* The ops dashboard, kept live over a websocket (/ws/ops/).
 *
 * The server pushes {"type": "snapshot", "html": ..., "at": ...} whenever the figures
 * change; the live part of the page (#ops-live) is swapped for it. When the socket drops
 * a notice says so, the page polls the same part over HTTP every few seconds meanwhile,
 * and the socket reconnects with backoff (1 s, 2 s, 4 s ... at most 10 s). */
(function () {
  "use strict";

  var root = document.getElementById("ops-live");
  if (!root || typeof window.WebSocket === "undefined") {
    return;
  }
  var statusEl = document.getElementById("live-status");
  var notice = document.getElementById("live-notice");
  var updated = document.getElementById("live-updated");
  var retry = 0;
  var fallbackTimer = null;
  var pingTimer = null;
  var pongDue = null;
  var reconnectTimer = null;

  var live = {
    updates: 0,
    socket: null,
    connected: false,
    reconnect: function () {
      connect();
    },
  };
  window.ObservatoryLive = live;

  function setStatus(state, text) {
    statusEl.className = "live-pill " + state;
    statusEl.textContent = text;
  }

  function stamp(iso) {
    var d = iso ? new Date(iso) : new Date();
    if (isNaN(d.getTime())) {
      d = new Date();
    }
    updated.textContent = d.toISOString().substring(11, 19);
    updated.setAttribute("datetime", d.toISOString());
  }

  function swap(html, iso) {
    root.innerHTML = html;
    stamp(iso);
    live.updates += 1;
    root.dispatchEvent(new CustomEvent("ops:updated", { bubbles: true }));
  }

  function showNotice(on) {
    notice.hidden = !on;
    document.body.classList.toggle("live-down", on);
  }

  function poll() {
    fetch(root.getAttribute("data-fallback"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.redirected || !r.ok) {
          return null;
        }
        return r.text();
      })
      .then(function (text) {
        if (text) {
          swap(text);
        }
      })
      .catch(function () {});
  }

  function startFallback() {
    if (!fallbackTimer) {
      fallbackTimer = window.setInterval(poll, 5000);
    }
  }

  function stopFallback() {
    if (fallbackTimer) {
      window.clearInterval(fallbackTimer);
      fallbackTimer = null;
    }
  }

  function stopPing() {
    if (pingTimer) {
      window.clearInterval(pingTimer);
      pingTimer = null;
    }
    if (pongDue) {
      window.clearTimeout(pongDue);
      pongDue = null;
    }
  }

  function startPing(ws) {
    stopPing();
    // a line that died without a close frame (a sleeping laptop, a dropped Wi-Fi) is
    // noticed by a ping that gets no answer
    pingTimer = window.setInterval(function () {
      if (ws.readyState !== WebSocket.OPEN) {
        return;
      }
      ws.send("ping");
      if (!pongDue) {
        pongDue = window.setTimeout(function () {
          ws.close();
        }, 10000);
      }
    }, 20000);
  }

  function scheduleReconnect() {
    if (reconnectTimer) {
      return;
    }
    var delay = Math.min(10000, 1000 * Math.pow(2, retry));
    retry += 1;
    reconnectTimer = window.setTimeout(function () {
      reconnectTimer = null;
      connect();
    }, delay);
  }

  function connect() {
    if (live.socket && live.socket.readyState <= 1) {
      return;
    }
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var ws;
    try {
      ws = new WebSocket(scheme + window.location.host + root.getAttribute("data-ws"));
    } catch (e) {
      scheduleReconnect();
      return;
    }
    live.socket = ws;
    ws.onopen = function () {
      retry = 0;
      live.connected = true;
      setStatus("live", "Live");
      showNotice(false);
      stopFallback();
      startPing(ws);
    };
    ws.onmessage = function (event) {
      var msg;
      try {
        msg = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (msg.type === "snapshot") {
        swap(msg.html, msg.at);
      } else if (msg.type === "pong" && pongDue) {
        window.clearTimeout(pongDue);
        pongDue = null;
      }
    };
    ws.onclose = function (event) {
      if (live.socket === ws) {
        live.socket = null;
      }
      live.connected = false;
      stopPing();
      if (event.code === 4401) {
        setStatus("down", "Signed out");
        notice.innerHTML = "<b>You are signed out.</b> Sign in again to see live figures.";
        showNotice(true);
        return;
      }
      setStatus("down", "Reconnecting…");
      showNotice(true);
      startFallback();
      scheduleReconnect();
    };
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && !live.connected) {
      retry = 0;
      if (reconnectTimer) {
        window.clearTimeout(reconnectTimer);
        reconnectTimer = null;
      }
      connect();
    }
  });
  connect();
})();
