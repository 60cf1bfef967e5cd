package sync

import (
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// The log entry decoders and the kept op results moved to package store (issue 13: store owns
// the value encodings); the engine tests written against them keep their
// names.

type pulledEntry = store.PulledEntry

type reportedResult = store.ReportedChange

func decodePulledEntry(v []byte, le *pulledEntry) error { return store.DecodePulledEntry(v, le) }

func entryReplica(v []byte) (crdt.ReplicaID, bool) { return store.LogEntryReplica(v) }
