// Package status is the read-only view of the health table that operators look at: the status
// listener served by every worker (page, JSON, CSV, Prometheus metrics, live event stream), and
// the documents hcctl prints.
//
// The model:
//
//   - The table (package shm) is the only source of truth. A request takes one shm.Snapshot, a
//     consistent copy of the header, the worker table and every allocated slot. Every worker reads
//     the same table, so every worker gives the same answer, and hcctl gives it too, from the
//     file, while the proxy runs or after it stopped. The only write is the opt-in admin action.
//   - Build turns a snapshot into a Document: explicit wire types with snake_case JSON tags, times
//     as Unix milliseconds, states and reasons as names. It is the one function that feeds the
//     HTML page, the JSON document and the CSV (whose header is Backend's JSON names, in struct
//     order), so the formats cannot disagree on what a field means. A Filter (?upstream=,
//     ?state=) applies to the Document, so to every format alike. The metrics collector reads
//     the same snapshot, once per scrape, and keeps the raw counters Prometheus wants.
//   - A Document also sums the servers up by upstream label (Upstream: available of configured,
//     responses, 5xx, the duration histogram); the page's summary rows turn those into rates
//     over the window since the handler's earlier view (rates, one per worker), else since start.
//   - A Document shows the table as it is: every allocated slot is a row, even one whose owner is
//     gone or belongs to an older generation (the next claim fixes that; hiding the row would hide
//     the problem). Rows are sorted by upstream label, then address.
//   - The event stream follows the table's event ring with ReadEvents, polling; it holds no state
//     but its cursor, so a client that reconnects with Last-Event-ID resumes where it was, and one
//     that fell more than a ring behind is told how many events it missed. A stream ends when its
//     client goes away, when the connection is closed, or when the worker serving it is marked
//     draining in the table, so it never holds a drain up.
//   - Access: Options.Allowed decides per client address (loopback only by default) before any
//     path is looked at; refused clients get 403 everywhere. POST /status/admin exists only with
//     Options.Admin, and refuses cross-origin browser requests.
//   - Hostile clients: NewServer answers a head of MaxHeadBytes or more with 431 and bounds the
//     time to read a head and a whole request; the handler refuses a chunked body (400, connection
//     closed), which is also how a Content-Length plus Transfer-Encoding smuggling attempt looks
//     once net/http has parsed it.
//
// The event stream has an HTML form (?format=html) whose list grows as events are flushed, so a
// browser shows it live without a script.
//
// Handler lists the paths and their parameters.
package status
