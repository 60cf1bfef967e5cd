package sync

import (
	"context"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// Pipelined pushes (docs/PROTOCOL.md "Pipelined pushes"). The ordering of
// pipelined requests is the server's (package server): it holds a request
// back until the one before it is decided, then hands it to Sync as any
// other. The engine's part is only what this file adds: a push-only
// request pulls nothing, and the server reads a replica's high-water to
// know when to let the next request through.

// pullFor pulls the page req asks for, or, for a push-only request
// (api.SyncRequest.PushOnly), returns an empty reply that leaves the
// device's cursor where it was.
func (e *Engine) pullFor(ctx context.Context, c Caller, req *api.SyncRequest) (*api.SyncResponse, error) {
	if !req.PushOnly {
		return e.Pull(ctx, c, req.Cursor, req.PullLimit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &api.SyncResponse{Protocol: api.ProtocolVersion, Clock: e.clock.Now(), Cursor: req.Cursor}, nil
}

// HighWater returns the highest seq of replica r applied so far (0 if
// none), as a reply's api.SyncResponse.HighWater says it.
func (e *Engine) HighWater(ctx context.Context, r crdt.ReplicaID) (uint64, error) {
	return e.replicaHighWater(ctx, r)
}
