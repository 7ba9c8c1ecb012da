// Swagger UI over the key-protected OpenAPI document: the key comes from the page's tab (sessionStorage) or
// is asked for, and is sent as "Authorization: Bearer <key>" with every request the docs make. Swagger UI's
// files come from this server (/docs/assets), and nothing is fetched from elsewhere: no online validator.
"use strict";

(function () {
  const storageKey = "cxreader.apiKey";
  let key = sessionStorage.getItem(storageKey) || "";
  if (!key) {
    key = (window.prompt("cxreader API key (sent as Authorization: Bearer …)") || "").trim();
    if (key) sessionStorage.setItem(storageKey, key);
  }
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    requestInterceptor: (request) => {
      if (key) request.headers.Authorization = `Bearer ${key}`;
      return request;
    },
  });
})();
