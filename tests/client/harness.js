// Loaded into the page by tests/client/test_browser.py (page.evaluate): a client of the API
// imported from its /client.js, and `window.record`, what happened to each write and connection.
async ({api, options}) => {
  const { Gateway } = await import(api + "/client.js");
  const record = (window.record = { writes: [], applied: {}, failed: {}, connection: [], closes: [] });
  class RecordedWebSocket extends WebSocket {
    constructor(url) {
      super(url);
      this.addEventListener("close", (event) => record.closes.push(event.code));
    }
  }
  const gw = (window.gw = new Gateway({
    baseUrl: api,
    WebSocket: RecordedWebSocket,
    token: () => window.issueToken(),
    retryMinMs: 50,
    retryMaxMs: 400,
    pollIntervalMs: 100,
    ...options,
  }));
  gw.on("applied", (d) => (record.applied[d.command_id] = (record.applied[d.command_id] ?? 0) + 1));
  gw.on("failed", (d) => {
    if (d.command_id) record.failed[d.command_id] = (record.failed[d.command_id] ?? 0) + 1;
  });
  gw.on("connection", (d) => record.connection.push(`${d.state}:${d.transport}`));
  // Start a write; its entry says when it was accepted and how (and how often) it settled.
  window.start = (op, ...args) => {
    const entry = { op, command_id: null, replayed: null, settled: 0, status: "sending", error: null };
    record.writes.push(entry);
    gw[op](...args).then(
      (accepted) => {
        const { command_id, replayed } = accepted;
        Object.assign(entry, { command_id, replayed, status: "pending" });
        accepted.applied.then(
          () => Object.assign(entry, { settled: entry.settled + 1, status: "applied" }),
          (error) => {
            entry.settled += 1;
            Object.assign(entry, { status: "failed", error: error.message, code: error.code });
          },
        );
      },
      (error) => Object.assign(entry, { status: "refused", error: error.message, code: error.code }),
    );
    return record.writes.length - 1;
  };
  gw.connect();
}
