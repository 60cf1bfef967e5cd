// Package api is Doorstep's wire contract: the msgpack messages of the sync
// protocol, the protocol version, and the table of stable error codes with
// their HTTP statuses and problem-details form, and the OpenAPI description
// of the JSON routes (openapi.yaml, embedded as OpenAPI). docs/PROTOCOL.md
// specifies the same contract for implementers in other languages.
//
// packed.go holds the packed (columnar) encoding of pulled and pushed
// changes (PackChanges, UnpackChanges, PackPush, UnpackPush; PROTOCOL.md
// "Packed pull encoding"): a binary format of its own inside a msgpack
// bin, decoded with every count and index bounded by the input and every
// op validated.
//
// api depends only on crdt (for ops and record states). It must not import
// echo, Badger, or any server, sync or store code: the client SDK and the
// server both build on it.
package api
