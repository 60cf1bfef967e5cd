package auth

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth/identity"
	"github.com/doorstep-health/doorstep/store"
)

// AuditEntry is one line of the audit trail (see api.AuditEntry; it lives
// in api, the wire contract, so that packages that may not import auth,
// such as the console, can record through a small interface of their own).
type AuditEntry = api.AuditEntry

// Actions recorded by this package. Other packages record their own
// actions (e.g. "record.read", "record.resolve", "record.erase") through
// Audit.
const (
	ActionTeamCreate     = "team.create"
	ActionUserCreate     = "user.create"
	ActionUserRole       = "user.role"
	ActionUserTeams      = "user.teams"
	ActionUserName       = "user.name"
	ActionUserDisable    = "user.disable"
	ActionUserEnable     = "user.enable"
	ActionUserDelete     = "user.delete"
	ActionPasswordReset  = "user.password_reset"
	ActionPasswordChange = "user.password_change"
	ActionUserLocked     = "user.locked"
	ActionDeviceRegister = "device.register"
	ActionDeviceRevoke   = "device.revoke"
	ActionDeviceLogout   = "device.logout"
)

// Audit trail layout (AuditLayoutVersion 1), in the auth store:
//
//	audit/<seq as 8 bytes big-endian> → AuditEntry as JSON
//	auditseq → the last seq written, 8 bytes big-endian
//
// Entries are only ever added. The transaction that adds entries reads
// the last seq from auditseq (or, in a store written before auditseq,
// from the last audit/ key) and writes it back bumped; write transactions
// are serialized by the store, across every process sharing it, so two
// servers never take the same seq, and seq order is commit order (a reader
// paging by seq never skips a later-committed entry). Within one process
// the Service also runs one write transaction at a time (see update). An entry
// about an account change is written in the same transaction as the
// change.
const (
	pAudit             = "audit/"
	kAuditSeq          = "auditseq"
	AuditLayoutVersion = 1
)

var actionPattern = regexp.MustCompile(`^[a-z][a-z0-9_.]{0,63}$`)

func auditKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(pAudit), seq)
}

// validateAudit checks an entry's bounds and cuts long detail values.
func validateAudit(e *AuditEntry) error {
	switch {
	case !actionPattern.MatchString(e.Action):
		return fmt.Errorf("%w: audit action %q", ErrInvalid, e.Action)
	case e.ActorID == "" || len(e.ActorID) > 200 || len(e.ActorName) > 200 || len(e.ActorRole) > 64 || len(e.Device) > 64:
		return fmt.Errorf("%w: audit actor missing or too long", ErrInvalid)
	case len(e.Team) > 64 || len(e.TargetKind) > 64 || len(e.TargetID) > 1024:
		return fmt.Errorf("%w: audit team or target too long", ErrInvalid)
	case len(e.Detail) > 32:
		return fmt.Errorf("%w: audit detail has more than 32 keys", ErrInvalid)
	}
	if len(e.Teams) > 1000 { // never refuse a change for being about many teams
		e.Teams = e.Teams[:1000]
	}
	for k, v := range e.Detail {
		if k == "" || len(k) > 64 {
			return fmt.Errorf("%w: audit detail key %q empty or too long", ErrInvalid, k)
		}
		if len(v) > 1024 {
			e.Detail[k] = strings.ToValidUTF8(v[:1021], "") + "..."
		}
	}
	return nil
}

// Audit appends an entry to the audit trail, durably. The actor fields are
// taken from the context's Actor (see WithActor) when the entry leaves
// ActorID empty. It returns an error wrapping ErrInvalid for an entry out
// of bounds.
func (s *Service) Audit(ctx context.Context, e AuditEntry) error {
	if e.ActorID == "" {
		a := ActorFrom(ctx)
		e.ActorID, e.ActorName, e.ActorRole = a.ID(), a.Name, a.Role
		if e.Device == "" {
			e.Device = a.Device
		}
	}
	if err := validateAudit(&e); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Group commit: entries that arrive while a commit is in flight wait
	// and go into the next commit together. The caller that finds no
	// commit in flight leads: it writes one batch, then hands the lead to
	// the first entry still waiting, so no caller writes more than one
	// batch of others' entries.
	done := make(chan error, 1)
	s.pendMu.Lock()
	s.pending = append(s.pending, auditReq{e: e, done: done})
	lead := !s.flushing
	s.flushing = true
	s.pendMu.Unlock()
	for {
		if lead {
			s.flushAudit(context.WithoutCancel(ctx)) // not cancelled with this caller: the batch holds others' entries
		}
		err := <-done
		if err == errAuditLead {
			lead = true
			continue
		}
		if err != nil {
			return fmt.Errorf("audit %s: %w", e.Action, err)
		}
		return nil
	}
}

// errAuditLead tells a waiting Audit caller to lead the next group commit.
var errAuditLead = errors.New("auth: lead the next audit commit")

// flushAudit writes one batch of pending entries (the caller leads), then
// passes the lead to the first entry still pending, or ends the flush.
func (s *Service) flushAudit(ctx context.Context) {
	s.pendMu.Lock()
	n := min(len(s.pending), maxAuditBatch)
	batch := s.pending[:n:n]
	s.pending = s.pending[n:]
	s.pendMu.Unlock()
	s.writeAuditBatch(ctx, batch)
	s.pendMu.Lock()
	if len(s.pending) > 0 {
		s.pending[0].done <- errAuditLead // its result is not sent yet: the buffer is free
	} else {
		s.flushing = false
	}
	s.pendMu.Unlock()
}

// writeAuditBatch stores a batch in one commit and tells each caller; a
// batch too big for one transaction is stored entry by entry.
func (s *Service) writeAuditBatch(ctx context.Context, batch []auditReq) {
	err := s.auditUpdate(ctx, func(_ store.Tx, add func(AuditEntry) error) error {
		for _, r := range batch {
			if err := add(r.e); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrTxnTooBig) && len(batch) > 1 {
		for _, r := range batch {
			s.writeAuditBatch(ctx, []auditReq{r})
		}
		return
	}
	for _, r := range batch {
		r.done <- err
	}
}

// auditReq is an entry waiting for a group commit.
type auditReq struct {
	e    AuditEntry
	done chan error
}

// maxAuditBatch bounds the entries of one group commit.
const maxAuditBatch = 256

// auditUpdate runs fn in a write transaction; fn adds entries with add,
// which assigns their seq (read in the transaction, see kAuditSeq) and
// time. Entries whose actor is empty get the context's actor.
func (s *Service) auditUpdate(ctx context.Context, fn func(txn store.Tx, add func(AuditEntry) error) error) error {
	actor := ActorFrom(ctx)
	return s.update(ctx, func(txn store.Tx) error {
		last, err := lastAuditSeq(txn)
		if err != nil {
			return err
		}
		next := last
		err = fn(txn, func(e AuditEntry) error {
			if e.ActorID == "" {
				e.ActorID, e.ActorName, e.ActorRole = actor.ID(), actor.Name, actor.Role
				if e.Device == "" {
					e.Device = actor.Device
				}
			}
			if err := validateAudit(&e); err != nil {
				return err
			}
			next++
			e.Seq = next
			if e.Time.IsZero() {
				e.Time = s.cfg.Now().UTC()
			}
			e.Teams = slices.DeleteFunc(slices.Clone(e.Teams), func(t string) bool { return t == e.Team })
			b, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("encode audit entry: %w", err)
			}
			return txn.Set(auditKey(e.Seq), b)
		})
		if err != nil || next == last {
			return err
		}
		return txn.Set([]byte(kAuditSeq), binary.BigEndian.AppendUint64(nil, next))
	})
}

// lastAuditSeq reads the last seq of the trail in txn: auditseq, or in a
// store without it the last audit/ key.
func lastAuditSeq(txn store.Tx) (uint64, error) {
	b, err := txn.Get([]byte(kAuditSeq))
	switch {
	case err == nil && len(b) == 8:
		return binary.BigEndian.Uint64(b), nil
	case err == nil:
		return 0, fmt.Errorf("audit position: %d bytes, want 8", len(b))
	case !errors.Is(err, store.ErrNotFound):
		return 0, fmt.Errorf("read audit position: %w", err)
	}
	it := txn.Iterate(store.IterOptions{Prefix: []byte(pAudit), Reverse: true, KeysOnly: true, Batch: 1})
	defer it.Close()
	var seq uint64
	if it.Rewind(); it.Valid() {
		k := it.Key()
		if len(k) != len(pAudit)+8 {
			return 0, fmt.Errorf("audit key %q is not %s<8 bytes>", k, pAudit)
		}
		seq = binary.BigEndian.Uint64(k[len(pAudit):])
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("read audit position: %w", err)
	}
	return seq, nil
}

// AuditQuery selects audit entries. Zero fields do not filter.
type AuditQuery struct {
	// After is a cursor: only entries with a greater Seq.
	After uint64
	// Limit is the most entries returned; default 100, at most 1,000.
	Limit int
	// Scope, unless nil, limits the entries to those concerning one of
	// these teams (an admin's teams). A non-nil empty Scope matches
	// nothing.
	Scope []string
	// Team, Actor (user ID) and Since filter; Action matches exactly, or
	// every action under a prefix ending in '.' ("user.").
	Team   string
	Actor  string
	Action string
	Since  time.Time
}

// AuditScanLimit bounds the entries one AuditLog call reads, matching or
// not, so that a narrow filter over a long trail costs bounded work per
// call; the caller pages on with the returned cursor.
const AuditScanLimit = 20_000

// AuditLog returns entries matching q in seq order, the cursor to pass as
// After for the next page (it moves past entries scanned but not matched),
// and whether the trail has entries past the cursor.
func (s *Service) AuditLog(ctx context.Context, q AuditQuery) (entries []AuditEntry, next uint64, more bool, err error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	q.Limit = min(q.Limit, 1000)
	out := []AuditEntry{}
	next = q.After
	err = s.view(ctx, func(txn store.Tx) error {
		out, next = out[:0], q.After
		it := txn.Iterate(store.IterOptions{Prefix: []byte(pAudit), Batch: 100})
		defer it.Close()
		scanned := 0
		for it.Seek(auditKey(q.After + 1)); it.Valid() && len(out) < q.Limit && scanned < AuditScanLimit; it.Next() {
			scanned++
			b, err := it.Value()
			if err != nil {
				return fmt.Errorf("read %x: %w", it.Key(), err)
			}
			var e AuditEntry
			if err := json.Unmarshal(b, &e); err != nil {
				return fmt.Errorf("decode %x: %w", it.Key(), err)
			}
			next = e.Seq
			if q.matches(&e) {
				out = append(out, e)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		more = it.Valid()
		return it.Err()
	})
	if err != nil {
		return nil, q.After, false, fmt.Errorf("audit log: %w", err)
	}
	return out, next, more, nil
}

func (q *AuditQuery) matches(e *AuditEntry) bool {
	concerns := func(team string) bool { return e.Team == team || slices.Contains(e.Teams, team) }
	switch {
	case q.Scope != nil && !slices.ContainsFunc(q.Scope, concerns):
		return false
	case q.Team != "" && !concerns(q.Team):
		return false
	case q.Actor != "" && e.ActorID != q.Actor:
		return false
	case !q.Since.IsZero() && e.Time.Before(q.Since):
		return false
	case q.Action != "" && e.Action != q.Action && !(strings.HasSuffix(q.Action, ".") && strings.HasPrefix(e.Action, q.Action)):
		return false
	}
	return true
}

// Actor is who makes a request: recorded in the audit trail, and for an
// admin the scope of the change (see the package doc and identity.Actor).
// The server puts one in every authenticated request's context with
// WithActor; the command line uses ServiceActor.
type Actor = identity.Actor

// ServiceActor is the operator acting on the data directory with the
// doorstep command line: a service admin, not scoped to teams.
func ServiceActor(name string) Actor { return identity.ServiceActor(name) }

// WithActor returns ctx carrying a.
func WithActor(ctx context.Context, a Actor) context.Context { return identity.WithActor(ctx, a) }

// ActorFrom returns the actor ctx carries; without one, the zero Actor
// (recorded as "system" and, for scoping, unscoped like the command line:
// only the server's requests carry scoped actors).
func ActorFrom(ctx context.Context) Actor { return identity.ActorFrom(ctx) }
