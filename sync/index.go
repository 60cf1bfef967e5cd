package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/sync/review"
)

// The term index (store.TermKey) lets the console find people without a
// scan: a person record is indexed under each word of its names ("n:"),
// its NHS number ("h:") and its postcode without spaces ("c:"); any record
// with a person_id register is indexed under "p:" and that ID, which gives
// a person's linked records. Terms follow the default home-visit schema's
// field names. The engine says which terms a state carries
// (recordTerms); package store keeps the entries: flush hands it the terms
// of the state read at the start of the transaction and of the state
// written (store.PutRecord adds and drops the difference), and erasure
// the stored state's (store.DeleteRecord).

// Term kinds.
const (
	termName     = "n:"
	termNHS      = "h:"
	termPostcode = "c:"
	termPerson   = "p:"
)

// maxTermLen bounds an indexed term; longer words are cut.
const maxTermLen = 64

func registerText(rec *crdt.Record, field string) string {
	w, ok := rec.Field(field).Winner()
	if !ok || len(w.Value) == 0 {
		return ""
	}
	var s string
	if err := msgpack.Unmarshal(w.Value, &s); err != nil {
		return ""
	}
	return s
}

// normWord lower-cases a word and keeps only its letters and digits.
func normWord(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	out := b.String()
	if len(out) > maxTermLen {
		out = out[:maxTermLen]
	}
	return out
}

func normCompact(s string) string { return normWord(strings.ReplaceAll(s, " ", "")) }

// recordTerms returns the sorted, distinct index terms of a record's
// current state; a deleted record has none.
func recordTerms(rec *crdt.Record) []string {
	if rec == nil || rec.Deleted() {
		return nil
	}
	var terms []string
	if rec.Collection == "people" {
		for _, f := range termNameFields {
			for _, w := range strings.Fields(registerText(rec, f)) {
				// "Hughes-Smith" is found as hughessmith, hughes and smith.
				if n := normWord(w); n != "" {
					terms = append(terms, termName+n)
				}
				for _, part := range strings.FieldsFunc(w, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
					if n := normWord(part); n != "" {
						terms = append(terms, termName+n)
					}
				}
			}
		}
		if n := normCompact(registerText(rec, termNHSField)); n != "" {
			terms = append(terms, termNHS+n)
		}
		if p := normCompact(registerText(rec, termPostcodeField)); p != "" {
			terms = append(terms, termPostcode+p)
		}
	}
	// A record links to every person it names: a contact or assessment by
	// person_id, a carer record by the cared-for person and the carer.
	for _, f := range termPersonFields {
		if p := registerText(rec, f); p != "" && !strings.ContainsRune(p, store.TermEnd) {
			terms = append(terms, termPerson+p)
		}
	}
	slices.Sort(terms)
	return slices.Compact(terms)
}

// The fields recordTerms reads: names, NHS number and postcode of
// people, and in any collection the people a record names.
var (
	termNameFields    = []string{"given_name", "family_name", "preferred_name"}
	termPersonFields  = []string{"person_id", "cared_for_person_id", "carer_person_id"}
	termNHSField      = "nhs_number"
	termPostcodeField = "postcode"
)

// termFields is the set of the fields recordTerms reads.
var termFields = func() map[string]bool {
	m := map[string]bool{termNHSField: true, termPostcodeField: true}
	for _, f := range slices.Concat(termNameFields, termPersonFields) {
		m[f] = true
	}
	return m
}()

// termFieldLens has bit n set for the length n of each term field's name
// under 64 bytes, so that isTermField answers for most fields (f00, the
// names of other lengths) without a map read: newRecordTerms asks for
// every op a push merges ahead.
var termFieldLens = func() uint64 {
	var m uint64
	for f := range termFields {
		if len(f) < 64 {
			m |= 1 << len(f)
		}
	}
	return m
}()

// isTermField reports whether recordTerms reads the field (termFields).
func isTermField(name string) bool {
	if n := len(name); n < 64 && termFieldLens&(1<<n) == 0 {
		return false
	}
	return termFields[name]
}

// newRecordTerms is recordTerms of the record ops leave on a blank one,
// for ops crdt.AppendNewState takes (each field written once, none to
// the delete register): recordTerms reads only termFields and the delete
// register, so a record of the ops on those fields alone has the same
// terms, and most records have none of them.
func newRecordTerms(ops []crdt.Op) []string {
	var rec *crdt.Record
	for i := range ops {
		op := &ops[i]
		if !isTermField(op.Field) {
			continue
		}
		if rec == nil {
			rec = crdt.NewRecord(op.Team, op.Collection, op.Record)
		}
		if err := rec.Apply(op); err != nil {
			return recordTerms(fullRecord(ops)) // not reached for such ops; the plain way if it were
		}
	}
	if rec == nil {
		return nil
	}
	return recordTerms(rec)
}

// fullRecord returns the record ops leave on a blank one (ops that Apply
// takes, in order).
func fullRecord(ops []crdt.Op) *crdt.Record {
	rec := crdt.NewRecord(ops[0].Team, ops[0].Collection, ops[0].Record)
	for i := range ops {
		_ = rec.Apply(&ops[i])
	}
	return rec
}

// MaxSearchResults bounds one search.
const MaxSearchResults = review.MaxSearchResults

// maxWordMatches bounds the index entries one word of a name search
// reads: a word matching more people than this (a one-letter prefix)
// finds only the first of them, in index order.
const maxWordMatches = 5000

// Search finds people of a team by name (every word of q must start a
// word of their names), NHS number or postcode (whole, spaces ignored),
// through the term index: the cost grows with the matches, not the team.
// It returns at most limit records (0 or more than MaxSearchResults means
// MaxSearchResults), by record ID.
func (e *Engine) Search(ctx context.Context, c Caller, team, q string, limit int) ([]*crdt.Record, error) {
	if err := scope(c, team); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxSearchResults {
		limit = MaxSearchResults
	}
	words := strings.Fields(q)
	if len(words) == 0 || len(q) > 200 {
		return nil, nil
	}
	var out []*crdt.Record
	err := e.view(ctx, func(txn store.Tx) error {
		var ids []string
		compact := normCompact(q)
		if compact != "" && strings.IndexFunc(compact, unicode.IsDigit) >= 0 {
			// An NHS number or a postcode: exact terms.
			for _, kind := range []string{termNHS, termPostcode} {
				got, err := termRecords(txn, team, kind+compact+string(rune(store.TermEnd)), "people", limit)
				if err != nil {
					return err
				}
				ids = append(ids, got...)
			}
		}
		if len(ids) == 0 {
			// Names: each word is a prefix scan of the name terms; the
			// people found by every word, without reading a record.
			var sets [][]string
			for _, w := range words {
				n := normWord(w)
				if n == "" {
					continue
				}
				got, err := termRecords(txn, team, termName+n, "people", maxWordMatches)
				if err != nil {
					return err
				}
				slices.Sort(got)
				sets = append(sets, slices.Compact(got))
			}
			if len(sets) == 0 {
				return nil
			}
			ids = sets[0]
			for _, s := range sets[1:] {
				ids = slices.DeleteFunc(ids, func(id string) bool { _, found := slices.BinarySearch(s, id); return !found })
			}
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
		for _, id := range ids {
			if len(out) == limit {
				break
			}
			v, err := txn.Get(store.RecordKey(team, "people", id))
			if err != nil {
				continue // erased since the index was read in this snapshot: cannot happen, but never fail a search on it
			}
			rec, err := store.DecodeRecord(v)
			if err != nil {
				return err
			}
			if !rec.Deleted() {
				out = append(out, rec)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	return out, nil
}

// termRecords lists the IDs of the records of collection under terms
// starting with prefix, at most max.
func termRecords(txn store.Tx, team, prefix, collection string, max int) ([]string, error) {
	p := store.TermPrefix(team, prefix)
	it := txn.Iterate(store.IterOptions{Prefix: p, KeysOnly: true})
	defer it.Close()
	var ids []string
	for it.Seek(p); it.Valid() && len(ids) < max; it.Next() {
		_, ref, err := store.ParseTermKey(it.Key())
		if err != nil {
			return nil, err
		}
		if ref.Collection == collection {
			ids = append(ids, ref.ID)
		}
	}
	return ids, it.Err()
}

// MaxLinked bounds the linked records one call returns.
const MaxLinked = 2000

// Linked returns the records of the team whose person_id is the person
// ref names (contacts, assessments, needs, goals, onward referrals,
// carers, consent events...), through the term index, in collection and
// ID order, at most MaxLinked.
func (e *Engine) Linked(ctx context.Context, c Caller, ref api.RecordRef) ([]api.RecordRef, error) {
	if err := scope(c, ref.Team); err != nil {
		return nil, err
	}
	if strings.ContainsRune(ref.ID, store.TermEnd) {
		return nil, nil
	}
	var out []api.RecordRef
	err := e.view(ctx, func(txn store.Tx) error {
		p := append(store.TermPrefix(ref.Team, termPerson+ref.ID), store.TermEnd)
		it := txn.Iterate(store.IterOptions{Prefix: p, KeysOnly: true})
		defer it.Close()
		for it.Seek(p); it.Valid() && len(out) < MaxLinked; it.Next() {
			_, r, err := store.ParseTermKey(it.Key())
			if err != nil {
				return err
			}
			out = append(out, api.RecordRef{Team: r.Team, Collection: r.Collection, ID: r.ID})
		}
		return it.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("linked: %w", err)
	}
	slices.SortFunc(out, func(a, b api.RecordRef) int {
		if c := strings.Compare(a.Collection, b.Collection); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// backfillTerms builds the term index for the records of a store written
// before the index existed, once (store.KeyTermIndex marks it done). It
// runs at Open, before the committer starts, in write transactions of
// some hundred records each: setting a term key twice is harmless, so a
// crash or a second process doing the same meanwhile (a shared store)
// leaves a correct index, and the marker is written last.
func (e *Engine) backfillTerms(ctx context.Context) error {
	err := e.kv.View(ctx, func(txn store.Tx) error {
		_, err := txn.Get(store.KeyTermIndex)
		return err
	})
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("term index marker: %w", err)
	}
	const batch = 500
	prefix := store.AllRecordsPrefix()
	seek := prefix
	n := 0
	for seek != nil {
		err := e.kv.Update(ctx, func(txn store.Tx) error {
			type indexed struct {
				rec   *crdt.Record
				terms []string
			}
			var recs []indexed
			it := txn.Iterate(store.IterOptions{Prefix: prefix, Batch: batch})
			k := 0
			next := []byte(nil)
			for it.Seek(seek); it.Valid(); it.Next() {
				if k == batch {
					next = bytes.Clone(it.Key())
					break
				}
				var rec *crdt.Record
				if err := itValue(it, func(v []byte) (err error) { rec, err = store.DecodeRecord(v); return err }); err != nil {
					it.Close()
					return err
				}
				recs = append(recs, indexed{rec, recordTerms(rec)})
				k++
			}
			err := it.Err()
			it.Close()
			if err != nil {
				return err
			}
			for _, x := range recs {
				if err := store.PutTerms(txn, x.rec.Team, x.rec.Collection, x.rec.ID, x.terms); err != nil {
					return err
				}
			}
			n += k
			seek = next
			return nil
		})
		if err != nil {
			return fmt.Errorf("term index backfill: %w", err)
		}
	}
	if err := e.kv.Update(ctx, func(txn store.Tx) error { return txn.Set(store.KeyTermIndex, nil) }); err != nil {
		return fmt.Errorf("term index backfill: %w", err)
	}
	if n > 0 {
		e.log.Info("built the search index for stored records", "records", n)
	}
	return nil
}
