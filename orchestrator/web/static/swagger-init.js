// Starts the vendored Swagger UI on /api/docs. A file, not an inline script, so the page keeps the app's CSP.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.dataset.openapi,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // "Try it out" from a logged-in browser posts with the session cookie, so it carries the CSRF header too.
    requestInterceptor: (request) => {
      if (root.dataset.csrf) request.headers["x-csrf-token"] = root.dataset.csrf;
      return request;
    },
  });
});
