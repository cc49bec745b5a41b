// Package status is the read-only view of the health table that operators look at: the status
// page served by every worker on the status listener, and the documents hcctl prints.
//
// The model:
//
//   - The table (package shm) is the only source of truth. A request takes one shm.Snapshot, a
//     consistent copy of the header, the worker table and every allocated slot, and nothing here
//     ever writes to the table. Every worker reads the same table, so every worker gives the same
//     answer, and hcctl gives it too, from the file, while the proxy runs or after it stopped.
//   - Build turns a snapshot into a Document: explicit wire types with snake_case JSON tags, times
//     as Unix milliseconds, states and reasons as names. It is the one function that feeds every
//     format (HTML and JSON now; CSV and metrics take the same Document), so the formats cannot
//     disagree on what a field means.
//   - A Document shows the table as it is: every allocated slot is a row, even one whose owner is
//     gone or belongs to an older generation (the next claim fixes that; hiding the row would hide
//     the problem). Rows are sorted by upstream label, then address.
//
// Handler serves GET /status (and /): HTML by default, ?format=json for the Document, and
// ?refresh=N to make the HTML page reload itself every N seconds.
package status
