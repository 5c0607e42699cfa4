// Keeps a signed-in page honest about its session: counts the token and the idle
// timeout down, and asks the server when either should have ended the session (or every
// poll interval). The server answers 401 once the session is gone; then we go to login.
// Asking is not activity: only pages the user opens reset the idle timeout.
(function () {
  "use strict";

  const body = document.body;
  const statusUrl = body.dataset.statusUrl;
  if (!statusUrl) {
    return;
  }
  const loginUrl = body.dataset.loginUrl || "/login?expired=1";
  const pollMs = (Number(body.dataset.pollSeconds) || 60) * 1000;
  let offsetMs = Number(body.dataset.serverNow) * 1000 - Date.now();
  let tokenExpiresAt = Number(body.dataset.tokenExpiresAt) || null;
  let idleExpiresAt = Number(body.dataset.idleExpiresAt) || null;
  let timer = null;

  function serverNow() {
    return Date.now() + offsetMs;
  }

  function format(remainingMs) {
    if (remainingMs <= 0) {
      return "expired";
    }
    const total = Math.floor(remainingMs / 1000);
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const seconds = String(total % 60).padStart(2, "0");
    if (hours > 0) {
      return "in " + hours + " h " + String(minutes).padStart(2, "0") + " min";
    }
    return "in " + minutes + ":" + seconds;
  }

  function show(id, deadline) {
    const element = document.getElementById(id);
    if (element && deadline) {
      element.textContent = format(deadline * 1000 - serverNow());
    }
  }

  function render() {
    show("token-countdown", tokenExpiresAt);
    show("idle-countdown", idleExpiresAt);
  }

  function schedule() {
    window.clearTimeout(timer);
    const now = serverNow();
    let next = now + pollMs;
    [tokenExpiresAt, idleExpiresAt].forEach(function (deadline) {
      if (deadline) {
        next = Math.min(next, deadline * 1000 + 500);
      }
    });
    timer = window.setTimeout(check, Math.max(1000, next - now));
  }

  async function check() {
    let response;
    try {
      response = await fetch(statusUrl, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (error) {
      timer = window.setTimeout(check, 5000);
      return;
    }
    if (response.status === 401) {
      window.location.assign(loginUrl);
      return;
    }
    if (response.ok) {
      const status = await response.json();
      offsetMs = status.now * 1000 - Date.now();
      tokenExpiresAt = status.token_expires_at;
      idleExpiresAt = status.idle_expires_at;
      render();
    }
    schedule();
  }

  render();
  window.setInterval(render, 1000);
  schedule();
})();
