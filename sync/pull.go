package sync

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// Cursor encoding (opaque to devices):
//
//	byte    version (2; version 1 lacks the epoch tag and is still read)
//	byte    mode: 1 = follow the log, 2 = snapshot in progress
//	u64     log position: last position delivered (log mode), or the
//	        position at which the snapshot started (snapshot mode)
//	u64     FNV-64a of the caller's sorted team set; a cursor minted for
//	        another set of teams bootstraps again
//	u64     version 2: the first 8 bytes of the store's epoch when the
//	        cursor was minted; a cursor of another epoch (the server was
//	        restored since) bootstraps again, since positions after the
//	        backup are reused for other changes
//	bytes   snapshot mode only: the last record key delivered
const (
	cursorVersion    = 2
	cursorVersion1   = 1
	modeLog          = 1
	modeSnapshot     = 2
	cursorFixedLenV1 = 2 + 8 + 8
	cursorFixedLen   = cursorFixedLenV1 + 8
)

type cursor struct {
	mode    byte
	pos     uint64
	teams   uint64
	epoch   uint64 // 0 in a version 1 cursor
	lastKey []byte
}

func (c cursor) encode() []byte {
	b := make([]byte, 0, cursorFixedLen+len(c.lastKey))
	b = append(b, cursorVersion, c.mode)
	b = binary.BigEndian.AppendUint64(b, c.pos)
	b = binary.BigEndian.AppendUint64(b, c.teams)
	b = binary.BigEndian.AppendUint64(b, c.epoch)
	return append(b, c.lastKey...)
}

func decodeCursor(b []byte) (cursor, error) {
	var c cursor
	if len(b) < 2 || (b[1] != modeLog && b[1] != modeSnapshot) {
		return c, ErrBadCursor
	}
	fixed := cursorFixedLen
	switch b[0] {
	case cursorVersion:
	case cursorVersion1:
		fixed = cursorFixedLenV1
	default:
		return c, ErrBadCursor
	}
	if len(b) < fixed {
		return c, ErrBadCursor
	}
	c.mode = b[1]
	c.pos = binary.BigEndian.Uint64(b[2:])
	c.teams = binary.BigEndian.Uint64(b[10:])
	if fixed == cursorFixedLen {
		c.epoch = binary.BigEndian.Uint64(b[18:])
	}
	if c.mode == modeSnapshot {
		c.lastKey = bytes.Clone(b[fixed:])
	} else if len(b) != fixed {
		return c, ErrBadCursor
	}
	return c, nil
}

// epochTag is the part of the epoch a cursor carries.
func (e *Engine) epochTag() uint64 { return binary.BigEndian.Uint64(e.epoch[:8]) }

func teamsHash(teams []string) uint64 {
	h := fnv.New64a()
	for _, t := range teams {
		h.Write(binary.AppendUvarint(nil, uint64(len(t))))
		h.Write([]byte(t))
	}
	return h.Sum64()
}

// Pull returns one page of what the caller's teams hold after cursor: record
// states while bootstrapping (empty cursor, a cursor for another team set,
// or one older than the retained log), then log entries. limit caps the
// items (0 means DefaultPullLimit, at most MaxPullLimit); pages are also
// capped by bytes. A pull reads only the log after the cursor, so its cost
// grows with what changed since, not with total history.
func (e *Engine) Pull(ctx context.Context, c Caller, cur []byte, limit int) (*api.SyncResponse, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch {
	case limit <= 0:
		limit = DefaultPullLimit
	case limit > MaxPullLimit:
		limit = MaxPullLimit
	}
	teams := teamSet(c.Teams)
	th := teamsHash(teams)
	tag := e.epochTag()
	resp := &api.SyncResponse{Protocol: api.ProtocolVersion}
	e.scrubMu.RLock()
	defer e.scrubMu.RUnlock()
	err := e.kv.View(ctx, func(txn store.Tx) error {
		// Only positions whose transaction has committed are served: the
		// last one is read in this snapshot, which holds every commit up
		// to it and none after (the store's snapshots hold a prefix of the
		// commits in order, across processes on a shared store). A commit
		// of another server process that this snapshot does not see has a
		// larger position, so the cursor never passes it.
		committed, err := store.GetU64Key(txn, store.KeyLogPos)
		if err != nil {
			return fmt.Errorf("read log position: %w", err)
		}
		floor, err := store.GetU64Key(txn, store.KeyLogFloor)
		if err != nil {
			return fmt.Errorf("read log floor: %w", err)
		}
		cu := cursor{mode: modeSnapshot, pos: committed, teams: th, epoch: tag}
		if len(cur) > 0 {
			parsed, err := decodeCursor(cur)
			if err != nil {
				return err
			}
			switch {
			case parsed.teams != th:
				// Another team set: bootstrap again (start over).
			case parsed.epoch != 0 && parsed.epoch != tag:
				// Minted before a restore: its positions may now name other
				// changes. Bootstrap again.
			case parsed.mode == modeLog && parsed.pos < floor:
				// Older than the retained log: bootstrap again.
			case parsed.pos > committed:
				// Ahead of the log: the server was restored from an older
				// backup. Bootstrap again rather than wait for positions that
				// may never carry the same changes.
				e.log.Warn("cursor ahead of the log; bootstrapping", "cursor", parsed.pos, "log", committed)
			default:
				cu = parsed
				cu.epoch = tag
			}
		}
		if cu.mode == modeSnapshot {
			return e.pullSnapshot(txn, teams, cu, limit, committed, resp)
		}
		return e.pullLog(txn, c.Replica, teams, cu, limit, committed, resp)
	})
	if errors.Is(err, ErrBadCursor) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	resp.Clock = e.clock.Now()
	return resp, nil
}

// pullSnapshot returns the next page of current record states of the
// caller's teams, in key order after cur.lastKey. When the records are
// exhausted the cursor switches to the log from the position at which the
// snapshot started. Changes committed after that position may already be
// in the records served; the device receives them again from the log, which
// is harmless because merging an op twice changes nothing.
func (e *Engine) pullSnapshot(txn store.Tx, teams []string, cu cursor, limit int, committed uint64, resp *api.SyncResponse) error {
	prefixes := make([][]byte, len(teams))
	for i, t := range teams {
		prefixes[i] = store.RecordPrefix(t)
	}
	// Ranges of different teams are disjoint; visit them in key order so
	// that one last key orders every team.
	slices.SortFunc(prefixes, bytes.Compare)
	bytesUsed := 0
	for _, prefix := range prefixes {
		start := prefix
		if cu.lastKey != nil && bytes.Compare(cu.lastKey, prefix) >= 0 {
			start = append(bytes.Clone(cu.lastKey), 0)
		}
		it := txn.Iterate(store.IterOptions{Prefix: prefix, Batch: 64})
		for it.Seek(start); it.Valid(); it.Next() {
			if len(resp.Snapshot) >= limit || bytesUsed >= e.pageBytes {
				it.Close()
				resp.Cursor = cursor{mode: modeSnapshot, pos: cu.pos, teams: cu.teams, epoch: cu.epoch, lastKey: cu.lastKey}.encode()
				resp.More = true
				return nil
			}
			// The stored state is already in the canonical form the reply
			// carries (crdt.MarshalRecord): copy it, do not decode it.
			var rec crdt.RecordBytes
			err := itValue(it, func(v []byte) error {
				_, b, err := store.DecodeRecordValue(v)
				if err != nil {
					return err
				}
				if len(b) == 0 {
					return fmt.Errorf("%w: empty record state", store.ErrBadValue)
				}
				bytesUsed += len(b)
				rec = crdt.RecordBytes(b) // Value is a copy already
				return nil
			})
			if err != nil {
				it.Close()
				return fmt.Errorf("snapshot record %q: %w", it.Key(), err)
			}
			resp.Snapshot = append(resp.Snapshot, rec)
			cu.lastKey = bytes.Clone(it.Key())
		}
		err := it.Err()
		it.Close()
		if err != nil {
			return err
		}
	}
	resp.Cursor = cursor{mode: modeLog, pos: cu.pos, teams: cu.teams, epoch: cu.epoch}.encode()
	resp.More = committed > cu.pos
	return nil
}

// logHead is one team's log iterator and its current position.
type logHead struct {
	it  store.Iterator
	pos uint64
	ok  bool
}

func (h *logHead) advance(prefix []byte, committed uint64) error {
	h.ok = false
	if !h.it.Valid() {
		return h.it.Err()
	}
	pos, err := store.LogPos(h.it.Key())
	if err != nil {
		return err
	}
	h.pos, h.ok = pos, pos <= committed
	return nil
}

// pullLog merges the caller's team logs by position after cu.pos, up to
// the committed position, and stops at a page limit on a position boundary
// (a change spanning teams is never split across pages).
//
// Changes the caller's own replica pushed are skipped: the device made those
// ops and keeps them until acknowledged, so sending them back would only
// cost bytes. Skipped entries do not count against the page's byte budget
// (a device that has just pushed thousands of changes would otherwise get
// empty pages marked more); they count against a separate budget of
// ownSkipFactor pages, which bounds one request's work. Either way the
// cursor moves past every entry read, so each page makes progress.
func (e *Engine) pullLog(txn store.Tx, self crdt.ReplicaID, teams []string, cu cursor, limit int, committed uint64, resp *api.SyncResponse) error {
	heads := make([]*logHead, len(teams))
	prefixes := make([][]byte, len(teams))
	for i, t := range teams {
		prefixes[i] = store.LogPrefix(t)
		h := &logHead{it: txn.Iterate(store.IterOptions{Prefix: prefixes[i], Batch: min(limit, 100)})}
		defer h.it.Close()
		h.it.Seek(store.LogKey(t, cu.pos+1))
		if err := h.advance(prefixes[i], committed); err != nil {
			return err
		}
		heads[i] = h
	}
	last := cu.pos
	bytesUsed := 0 // bytes of entries served
	skipped := 0   // bytes of the caller's own entries read and skipped
	more := false
	for {
		var pos uint64
		found := false
		for _, h := range heads {
			if h.ok && (!found || h.pos < pos) {
				pos, found = h.pos, true
			}
		}
		if !found {
			break
		}
		if len(resp.Changes)+len(resp.Purged)+len(resp.Snapshot) >= limit || bytesUsed >= e.pageBytes || skipped >= ownSkipFactor*e.pageBytes {
			more = true
			break
		}
		var pc *api.PulledChange
		for i, h := range heads {
			if !h.ok || h.pos != pos {
				continue
			}
			var le store.PulledEntry
			own := false
			err := itValue(h.it, func(v []byte) error {
				// The caller's own entries are skipped: read only their
				// replica, not their ops. They count against the skip
				// budget, not the page: they send nothing.
				if r, ok := store.LogEntryReplica(v); ok && r == self && !self.IsZero() {
					own = true
					skipped += len(v)
					return nil
				}
				// The ops are copied as stored, not decoded.
				if err := store.DecodePulledEntry(v, &le); err != nil {
					return err
				}
				if le.Replica == self && !self.IsZero() {
					skipped += len(v)
				} else {
					// The page holds the ops as served: a packed entry
					// (store layout 3) is a quarter of them.
					bytesUsed += max(len(v), len(le.Ops))
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("log entry %d: %w", pos, err)
			}
			if own || le.Replica == self && !self.IsZero() {
				h.it.Next()
				if err := h.advance(prefixes[i], committed); err != nil {
					return err
				}
				continue
			}
			// An erasure entry has no ops: it names records to purge.
			resp.Purged = appendPurged(resp.Purged, teams[i], le.Erased)
			// A restate entry carries record states: devices merge them
			// like bootstrap records.
			resp.Snapshot = append(resp.Snapshot, le.States...)
			if le.Ops.Len() > 0 {
				if pc == nil {
					resp.Changes = append(resp.Changes, api.PulledChange{Author: le.Author, Ops: le.Ops})
					pc = &resp.Changes[len(resp.Changes)-1]
				} else {
					// The same change in another of the caller's teams:
					// one change on the wire, its ops in team order.
					ops, err := pc.Ops.Append(le.Ops)
					if err != nil {
						return fmt.Errorf("log entry %d: %w", pos, err)
					}
					pc.Ops = ops
				}
			}
			h.it.Next()
			if err := h.advance(prefixes[i], committed); err != nil {
				return err
			}
		}
		last = pos
	}
	if !more {
		// Everything up to the committed position has been delivered.
		last = max(last, committed)
	}
	resp.Cursor = cursor{mode: modeLog, pos: last, teams: cu.teams, epoch: cu.epoch}.encode()
	resp.More = more
	return nil
}

// ownSkipFactor bounds the bytes of the caller's own log entries one pull
// reads and skips, in page budgets.
const ownSkipFactor = 16
