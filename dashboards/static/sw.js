// Service worker: keeps the pages and static files so the app opens and shows the last values
// (kept in localStorage by the pages) when the connection drops. Network first, so a page is
// never older than the server's while online; the cache answers only when the network fails.
// The API and the websocket are never cached (they carry the member's token).
const CACHE = "ioe-v2";
const SHELL = [
  "/member", "/tablet", "/control", "/", "/manifest.webmanifest", "/static/style.css",
  "/static/common.js", "/static/i18n.js", "/static/charts.js", "/static/messages.js",
  "/static/member.js", "/static/control.js", "/static/index.js", "/static/icon.svg",
  "/static/vendor/uplot/uPlot.iife.min.js", "/static/vendor/uplot/uPlot.min.css",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin
      || url.pathname.startsWith("/api/") || url.pathname === "/ws") return;
  event.respondWith(fetch(event.request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(url.pathname, copy));
    }
    return response;
  }).catch(() => caches.match(url.pathname).then((hit) => hit || Response.error())));
});
