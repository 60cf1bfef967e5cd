package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
)

// Epochs (see docs/PROTOCOL.md "Epochs"). The device remembers the server
// epoch it last synced in. When a reply names another one, the server was
// restored from a backup and may lack changes it had acknowledged or this
// device had pulled: before anything else the device re-sends every record
// state it holds (which the server merges idempotently), then tells the
// server the highest seq it had acknowledged so the server re-bases its
// high-water mark instead of answering seq_gap forever, forgets its pull
// cursor and bootstraps again in the new epoch. Attachment files the
// device holds go back in the upload queue (requeueBlobs), so those the
// restored server lacks are sent again.
var (
	keyEpoch   = []byte("m/epoch")   // the server epoch last synced in
	keyRestate = []byte("m/restate") // set: a new epoch was seen and the restate is not finished
)

// restatePageBytes bounds the record states of one restate request; a page
// the server still finds too big (body_too_large: bytes or msgpack values)
// is split in halves and sent again.
const restatePageBytes = 512 << 10

// beforeSync runs a pending restate to completion, then stamps req with the
// epoch the device syncs in. It is the hook sync calls before every
// request.
func (r *Replica) beforeSync(ctx context.Context, req *api.SyncRequest) error {
	var known, pending []byte
	if err := r.view(func(txn *badger.Txn) error {
		var err error
		if known, err = get(txn, keyEpoch); err != nil {
			return err
		}
		pending, err = get(txn, keyRestate)
		return err
	}); err != nil {
		return fmt.Errorf("client: read epoch: %w", err)
	}
	if pending != nil {
		if err := r.restate(ctx, known); err != nil {
			return err
		}
		if err := r.view(func(txn *badger.Txn) error {
			var err error
			known, err = get(txn, keyEpoch)
			return err
		}); err != nil {
			return err
		}
		req.Cursor = nil
	}
	req.Epoch = known
	return nil
}

// afterSync looks at a reply's epoch. It returns true when the reply comes
// from a new epoch (the server applied and pulled nothing): the restate is
// then recorded as pending and the caller starts the round again.
func (r *Replica) afterSync(resp *api.SyncResponse) (bool, error) {
	if len(resp.Epoch) == 0 {
		return false, nil // a server from before epochs
	}
	var stale bool
	err := r.db.Update(func(txn *badger.Txn) error {
		known, err := get(txn, keyEpoch)
		if err != nil {
			return err
		}
		switch {
		case known == nil:
			return txn.Set(keyEpoch, bytes.Clone(resp.Epoch))
		case bytes.Equal(known, resp.Epoch):
			return nil
		}
		stale = true
		return txn.Set(keyRestate, bytes.Clone(resp.Epoch))
	})
	if err != nil {
		return false, fmt.Errorf("client: store epoch: %w", err)
	}
	if stale {
		r.log.Warn("server restored from a backup (new epoch): re-sending local records")
	}
	return stale, nil
}

// restate re-sends every local record state to the server in pages, the
// last one with RestateDone and the highest acknowledged seq, then adopts
// the server's new epoch and drops the pull cursor.
func (r *Replica) restate(ctx context.Context, old []byte) error {
	var page []crdt.RecordBytes
	sent, restated := 0, 0
	send := func(done bool, rebase uint64) (*api.SyncResponse, error) {
		req := &api.SyncRequest{Protocol: api.ProtocolVersion, Replica: r.id, Clock: r.reading(), Schema: r.opts.SchemaVersion,
			Epoch: old, Restate: page, RestateDone: done, Rebase: rebase}
		resp, _, err := r.syncRequest(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("client: restate: %w", err)
		}
		r.adjustClock(resp.Clock)
		if err := r.purgeRestated(resp.Purged); err != nil {
			return nil, err
		}
		sent += len(page)
		restated += resp.Restated
		page = nil
		return resp, nil
	}
	// Pages are read in one snapshot; each is sent after the read.
	var pages [][]crdt.RecordBytes
	var rebase uint64
	err := r.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefRecord, PrefetchValues: true})
		defer it.Close()
		var cur []crdt.RecordBytes
		n := 0
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(cur) > 0 && (n+len(v) > restatePageBytes || len(cur) >= 1000) {
				pages, cur, n = append(pages, cur), nil, 0
			}
			cur = append(cur, crdt.RecordBytes(v))
			n += len(v)
		}
		if len(cur) > 0 {
			pages = append(pages, cur)
		}
		// Every seq below the oldest change still in the outbox was
		// acknowledged; with an empty outbox, every seq assigned.
		ci := txn.NewIterator(badger.IteratorOptions{Prefix: prefChange})
		defer ci.Close()
		ci.Rewind()
		if ci.Valid() {
			k := ci.Item().Key()
			rebase = binary.BigEndian.Uint64(k[len(prefChange):]) - 1
			return nil
		}
		v, err := get(txn, keyNextSeq)
		if err != nil {
			return err
		}
		rebase = u64(v)
		return nil
	})
	if err != nil {
		return fmt.Errorf("client: restate: read records: %w", err)
	}
	var sendPage func(p []crdt.RecordBytes) error
	sendPage = func(p []crdt.RecordBytes) error {
		page = p
		_, err := send(false, 0)
		if problemCode(err) == api.CodeBodyTooLarge && len(p) > 1 {
			h := len(p) / 2
			if err := sendPage(p[:h]); err != nil {
				return err
			}
			return sendPage(p[h:])
		}
		return err
	}
	for _, p := range pages {
		if err := sendPage(p); err != nil {
			return err
		}
	}
	resp, err := send(true, rebase)
	if err != nil {
		return err
	}
	if len(resp.Epoch) == 0 {
		return fmt.Errorf("client: restate: the server sent no epoch")
	}
	r.blobMu.Lock() // requeueBlobs rewrites attachment metadata
	err = r.db.Update(func(txn *badger.Txn) error {
		if err := requeueBlobs(txn); err != nil {
			return err
		}
		if err := txn.Set(keyEpoch, bytes.Clone(resp.Epoch)); err != nil {
			return err
		}
		if err := txn.Delete(keyCursor); err != nil {
			return err
		}
		return txn.Delete(keyRestate)
	})
	r.blobMu.Unlock()
	if err != nil {
		return fmt.Errorf("client: restate: %w", err)
	}
	r.refreshUploadStatus()
	now := r.opts.Wall()
	r.setStatus(func(s *Status) { s.ServerRestored = now; s.Restated += restated })
	r.log.Info("restate done: server holds this device's records again", "records", sent, "merged", restated, "rebase", rebase)
	return nil
}

// purgeRestated deletes the records a restate reply names erased
// (api.SyncResponse.Purged: the server refused their states), with their
// ops in the outbox and their stored rejections, as a pulled erasure does:
// the bootstrap that follows lists no erasures, so this is the device's
// only word of them. Their attachment files go with the next
// PurgeAttachments.
func (r *Replica) purgeRestated(refs []api.RecordRef) error {
	if len(refs) == 0 {
		return nil
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	w := &replyWrites{}
	err := r.db.Update(func(txn *badger.Txn) error {
		if err := planErasure(w, txnReader{txn}, refs); err != nil {
			return err
		}
		for _, ref := range refs {
			if err := txn.Delete(recordKey(ref)); err != nil {
				return err
			}
		}
		return writeResidue(txn, w)
	})
	if err != nil {
		return fmt.Errorf("client: restate: purge erased records: %w", err)
	}
	r.setStatus(func(s *Status) { s.Pending = max(0, s.Pending-w.DroppedOps) })
	r.notify(refs)
	r.log.Info("restate: records erased on the server purged here", "records", len(refs), "dropped_ops", w.DroppedOps)
	return nil
}
