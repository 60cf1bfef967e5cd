package client

import "github.com/doorstep-health/doorstep/crdt"

// Ops received from elsewhere (a pulled page, ApplyRemote) are merged
// through one crdt.Batch per record, so that N ops to one field cost
// O(N log N) rather than a rebuild of the field per op (issue 9 item 2).

// batchFor returns rec's batch in batches, starting one if needed.
func batchFor(batches map[*crdt.Record]*crdt.Batch, rec *crdt.Record) *crdt.Batch {
	b, ok := batches[rec]
	if !ok {
		b = crdt.NewBatch(rec)
		batches[rec] = b
	}
	return b
}

// flushBatches merges every batch's queued ops into its record.
func flushBatches(batches map[*crdt.Record]*crdt.Batch) {
	for _, b := range batches {
		b.Flush()
	}
}
