"""The desk's and the agencies' web console (``/console/``): server-rendered pages in Bahasa
Indonesia over routing's ``Workflow`` — the same commands, checks and events as RPC and the HTTP
API. ``config`` reads its settings, ``session`` signs the session cookie and its CSRF token,
``present`` turns workflow data into words and lists for the pages, ``details`` keeps the filing
facts only the console shows, ``pages`` answers the requests. See docs/console.md."""
