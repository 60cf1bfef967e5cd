// Package api is Doorstep's wire contract: the msgpack messages of the sync
// protocol, the protocol version, and the table of stable error codes with
// their HTTP statuses and problem-details form, and the OpenAPI description
// of the JSON routes (openapi.yaml, embedded as OpenAPI). docs/PROTOCOL.md
// specifies the same contract for implementers in other languages.
//
// api depends only on crdt (for ops and record states). It must not import
// echo, Badger, or any server, sync or store code: the client SDK and the
// server both build on it.
package api
