// Passkeys: registration and sign-in ceremonies through navigator.credentials. The server
// hands out the options (JSON, binary fields as base64url) and checks what comes back.
(function () {
  "use strict";

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    base64 += "===".slice((base64.length + 3) % 4);
    var raw = atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: toBytes(item.id) });
    });
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error((data && data.message) || "the request failed");
        return data;
      });
    });
  }

  function register(options) {
    var publicKey = Object.assign({}, options, {
      challenge: toBytes(options.challenge),
      user: Object.assign({}, options.user, { id: toBytes(options.user.id) }),
      excludeCredentials: descriptors(options.excludeCredentials),
    });
    return navigator.credentials.create({ publicKey: publicKey }).then(function (credential) {
      var response = credential.response;
      return {
        id: credential.id,
        rawId: toText(credential.rawId),
        type: credential.type,
        response: {
          clientDataJSON: toText(response.clientDataJSON),
          attestationObject: toText(response.attestationObject),
          transports: response.getTransports ? response.getTransports() : [],
        },
        clientExtensionResults: credential.getClientExtensionResults(),
        authenticatorAttachment: credential.authenticatorAttachment || undefined,
      };
    });
  }

  function authenticate(options) {
    var publicKey = Object.assign({}, options, {
      challenge: toBytes(options.challenge),
      allowCredentials: descriptors(options.allowCredentials),
    });
    return navigator.credentials.get({ publicKey: publicKey }).then(function (credential) {
      var response = credential.response;
      return {
        id: credential.id,
        rawId: toText(credential.rawId),
        type: credential.type,
        response: {
          clientDataJSON: toText(response.clientDataJSON),
          authenticatorData: toText(response.authenticatorData),
          signature: toText(response.signature),
          userHandle: response.userHandle ? toText(response.userHandle) : undefined,
        },
        clientExtensionResults: credential.getClientExtensionResults(),
        authenticatorAttachment: credential.authenticatorAttachment || undefined,
      };
    });
  }

  function showCodes(codes, next) {
    var panel = document.getElementById("passkey-done");
    var list = document.getElementById("passkey-codes");
    if (!panel || !list) {
      window.location.assign(next);
      return;
    }
    codes.forEach(function (code) {
      var item = document.createElement("li");
      var text = document.createElement("code");
      text.textContent = code;
      item.appendChild(text);
      list.appendChild(item);
    });
    document.getElementById("passkey-codes-note").hidden = codes.length === 0;
    document.getElementById("passkey-no-codes").hidden = codes.length !== 0;
    document.getElementById("enrol-forms").hidden = true;
    panel.hidden = false;
  }

  function failed(status, error) {
    status.hidden = false;
    status.textContent = "The passkey did not work: " + error.message;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var registerButton = document.getElementById("passkey-register");
    var signInButton = document.getElementById("passkey-sign-in");
    var status = document.getElementById("passkey-status");
    if (registerButton) {
      registerButton.addEventListener("click", function () {
        var csrf = registerButton.dataset.csrf;
        post("/mfa/passkey/options", { csrf_token: csrf })
          .then(function (started) {
            return register(started.options).then(function (credential) {
              return post("/mfa/passkey", {
                csrf_token: csrf,
                handle: started.handle,
                credential: credential,
              });
            });
          })
          .then(function (done) {
            showCodes(done.recovery_codes || [], done.next || "/account/security");
          })
          .catch(function (error) {
            failed(status, error);
          });
      });
    }
    if (signInButton) {
      signInButton.addEventListener("click", function () {
        var csrf = signInButton.dataset.csrf;
        post("/login/mfa/passkey/options", { csrf_token: csrf })
          .then(function (started) {
            return authenticate(started.options);
          })
          .then(function (credential) {
            return post("/login/mfa/passkey", { csrf_token: csrf, credential: credential });
          })
          .then(function (done) {
            window.location.assign(done.next || "/dashboard");
          })
          .catch(function (error) {
            failed(status, error);
          });
      });
    }
  });
})();
