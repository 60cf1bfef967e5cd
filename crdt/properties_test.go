package crdt

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

var (
	longFlag = flag.Bool("long", false, "run far more random cases in the property tests")
	seedFlag = flag.Uint64("seed", 0, "seed for the randomized tests (0: pick one and print it)")
)

// testSeed returns the seed for a randomized test, printing it so that a
// failure replays with -seed.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test ./crdt -run '^%s$' -args -seed %d)", seed, t.Name(), seed)
	return seed
}

// cases returns how many random cases a property test runs.
func cases(normal int) int {
	if *longFlag {
		return normal * 50
	}
	return normal
}

// The simulation: a few replicas edit a few records offline, each making
// ops from its own state with its own HLC on its own (jumpy) wall clock, and
// now and then receive some of each other's ops.

const simTeam, simColl = "wigan", "people"

var (
	simRecords   = []string{"p1", "p2"}
	simRegisters = []string{"mobility", "phone", "ons4_happy"}
	simSets      = []string{"needs", "staff"}
	simLogs      = []string{"notes"}
	simValues    = []any{"stick", "frame", "wheelchair", 3, 7, true, nil, []int{1, 2}, map[string]int{"a": 1}}
	simElems     = []any{"mobility", "money", "loneliness", "mood"}
)

type simReplica struct {
	id    ReplicaID
	wall  time.Time
	clock *Clock
	recs  map[string]*Record
	known map[OpID]bool
	ops   []Op // every op this replica has, in the order it got them
	seen  map[string][]OpID
}

type sim struct {
	rng  *rand.Rand
	reps []*simReplica
	ops  []Op // every op made, in creation order
}

func newSim(rng *rand.Rand, nReplicas int) *sim {
	s := &sim{rng: rng}
	base := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	for range nReplicas {
		r := &simReplica{
			recs:  map[string]*Record{},
			known: map[OpID]bool{},
			seen:  map[string][]OpID{},
			wall:  base.Add(time.Duration(rng.IntN(5000)) * time.Millisecond),
		}
		for i := range r.id {
			r.id[i] = byte(rng.Uint32())
		}
		r.id[0] |= 1 // never the zero replica
		r.clock = NewClock(func() time.Time { return r.wall }, time.Hour)
		for _, id := range simRecords {
			r.recs[id] = NewRecord(simTeam, simColl, id)
		}
		s.reps = append(s.reps, r)
	}
	return s
}

// tick moves a replica's wall clock: usually forward a little, sometimes not
// at all (the logical counter runs), sometimes backwards.
func (s *sim) tick(r *simReplica) {
	switch n := s.rng.IntN(10); {
	case n < 2:
	case n < 3:
		r.wall = r.wall.Add(-time.Duration(s.rng.IntN(3000)) * time.Millisecond)
	default:
		r.wall = r.wall.Add(time.Duration(s.rng.IntN(40)) * time.Millisecond)
	}
}

func (s *sim) value(vs []any) msgpack.RawMessage { return MustValue(vs[s.rng.IntN(len(vs))]) }

// edit has replica r make one op from its own state and apply it.
func (s *sim) edit(t testing.TB, r *simReplica) {
	s.tick(r)
	rec := r.recs[simRecords[s.rng.IntN(len(simRecords))]]
	id := OpID{Time: r.clock.Now(), Replica: r.id}
	var op Op
	switch n := s.rng.IntN(20); {
	case n < 7:
		field := simRegisters[s.rng.IntN(len(simRegisters))]
		op = rec.Write(id, field, s.value(simValues))
		if s.rng.IntN(5) == 0 {
			// A writer that saw only part of the history: pred is any
			// subset of the IDs this replica has ever seen on the field.
			op.Pred = nil
			for _, p := range r.seen[rec.ID+"/"+field] {
				if s.rng.IntN(2) == 0 {
					op.Pred = append(op.Pred, p)
				}
			}
		}
	case n < 11:
		op = rec.Add(id, simSets[s.rng.IntN(len(simSets))], s.value(simElems))
	case n < 15:
		op = rec.Remove(id, simSets[s.rng.IntN(len(simSets))], s.value(simElems))
	case n < 18:
		op = rec.Append(id, simLogs[s.rng.IntN(len(simLogs))], s.value(simValues))
	case n < 19:
		op = rec.Delete(id)
	default:
		op = rec.Restore(id)
	}
	s.ops = append(s.ops, op)
	s.receive(t, r, op)
}

// receive applies an op at replica r (once) and moves its clock past it.
func (s *sim) receive(t testing.TB, r *simReplica, op Op) {
	if r.known[op.ID] {
		return
	}
	if err := r.clock.Update(op.ID.Time); err != nil {
		t.Fatalf("update clock: %v", err)
	}
	if err := r.recs[op.Record].Apply(&op); err != nil {
		t.Fatalf("apply %+v: %v", op, err)
	}
	r.known[op.ID] = true
	r.ops = append(r.ops, op)
	key := op.Record + "/" + op.Field
	r.seen[key] = append(r.seen[key], op.ID)
}

// exchange sends a random part of what replica a has to replica b: of
// each writer's ops, a random prefix in the writer's order (the order a
// received them in), as a sync through the server delivers them. Ops b
// already has arrive again as duplicates.
func (s *sim) exchange(t testing.TB, a, b *simReplica) {
	stopped := map[ReplicaID]bool{}
	for _, op := range a.ops {
		if stopped[op.ID.Replica] {
			continue
		}
		if s.rng.IntN(4) == 0 {
			stopped[op.ID.Replica] = true
			continue
		}
		s.receive(t, b, op)
	}
}

// fifoShuffle returns ops (in creation order) delivered in a random
// interleaving that keeps each writer's ops in its order, with random
// duplicates of ops already delivered.
func (s *sim) fifoShuffle(ops []Op) []Op {
	queues := map[ReplicaID][]Op{}
	var writers []ReplicaID
	for _, op := range ops {
		if _, ok := queues[op.ID.Replica]; !ok {
			writers = append(writers, op.ID.Replica)
		}
		queues[op.ID.Replica] = append(queues[op.ID.Replica], op)
	}
	var feed []Op
	for len(writers) > 0 {
		if len(feed) > 0 && s.rng.IntN(4) == 0 {
			feed = append(feed, feed[s.rng.IntN(len(feed))])
			continue
		}
		i := s.rng.IntN(len(writers))
		w := writers[i]
		feed = append(feed, queues[w][0])
		if queues[w] = queues[w][1:]; len(queues[w]) == 0 {
			writers = slices.Delete(writers, i, i+1)
		}
	}
	return feed
}

// run makes about n ops across the replicas with exchanges in between.
func (s *sim) run(t testing.TB, n int) {
	for range n {
		r := s.reps[s.rng.IntN(len(s.reps))]
		if s.rng.IntN(4) == 0 {
			s.exchange(t, r, s.reps[s.rng.IntN(len(s.reps))])
			continue
		}
		s.edit(t, r)
	}
}

// state returns a random replica's state of a random record, by name.
func (s *sim) state(rec string) *Record {
	return s.reps[s.rng.IntN(len(s.reps))].recs[rec]
}

func (s *sim) opsFor(rec string) []Op {
	var ops []Op
	for _, op := range s.ops {
		if op.Record == rec {
			ops = append(ops, op)
		}
	}
	return ops
}

func encode(t testing.TB, r *Record) []byte {
	b, err := MarshalRecord(r)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

func merged(t testing.TB, rs ...*Record) *Record {
	out := rs[0].Clone()
	for _, r := range rs[1:] {
		if err := out.Merge(r); err != nil {
			t.Fatalf("merge: %v", err)
		}
	}
	return out
}

// forCases runs check on n random simulations, each with its own seed
// derived from the test's seed, and names the failing case's seed.
func forCases(t *testing.T, n int, check func(t testing.TB, s *sim) error) {
	t.Helper()
	seed := testSeed(t)
	master := rand.New(rand.NewPCG(seed, 0x5eed))
	for i := range n {
		cs := master.Uint64()
		rng := rand.New(rand.NewPCG(cs, cs>>1))
		s := newSim(rng, 2+rng.IntN(3))
		s.run(t, 1+rng.IntN(30))
		if err := check(t, s); err != nil {
			t.Fatalf("case %d (seed %d): %v", i, seed, err)
		}
	}
}

func lawMergeCommutative(t testing.TB, s *sim) error {
	rec := simRecords[s.rng.IntN(len(simRecords))]
	a, b := s.state(rec), s.state(rec)
	ab, ba := encode(t, merged(t, a, b)), encode(t, merged(t, b, a))
	if !bytes.Equal(ab, ba) {
		return fmt.Errorf("a∪b != b∪a:\n%x\n%x", ab, ba)
	}
	return nil
}

func lawMergeAssociative(t testing.TB, s *sim) error {
	rec := simRecords[s.rng.IntN(len(simRecords))]
	a, b, c := s.state(rec), s.state(rec), s.state(rec)
	left := encode(t, merged(t, merged(t, a, b), c))
	right := encode(t, merged(t, a, merged(t, b, c)))
	if !bytes.Equal(left, right) {
		return fmt.Errorf("(a∪b)∪c != a∪(b∪c):\n%x\n%x", left, right)
	}
	return nil
}

func lawMergeIdempotent(t testing.TB, s *sim) error {
	rec := simRecords[s.rng.IntN(len(simRecords))]
	a, b := s.state(rec), s.state(rec)
	if aa, a0 := encode(t, merged(t, a, a)), encode(t, a); !bytes.Equal(aa, a0) {
		return fmt.Errorf("a∪a != a:\n%x\n%x", aa, a0)
	}
	ab := encode(t, merged(t, a, b))
	if abb := encode(t, merged(t, a, b, b)); !bytes.Equal(ab, abb) {
		return fmt.Errorf("(a∪b)∪b != a∪b:\n%x\n%x", abb, ab)
	}
	// Applying again ops the state already holds changes nothing.
	r := s.reps[s.rng.IntN(len(s.reps))]
	st := r.recs[rec]
	c := st.Clone()
	for _, op := range r.ops {
		if op.Record == rec && s.rng.IntN(2) == 0 {
			if err := c.Apply(&op); err != nil {
				return err
			}
		}
	}
	if before, after := encode(t, st), encode(t, c); !bytes.Equal(before, after) {
		return fmt.Errorf("re-applying known ops changed the state:\n%x\n%x", before, after)
	}
	return nil
}

// lawConvergence: replicas that apply the same ops, each in its own random
// order (keeping each writer's ops in its order, see the package doc) with
// random duplicates, hold byte-identical states.
func lawConvergence(t testing.TB, s *sim) error {
	rec := simRecords[s.rng.IntN(len(simRecords))]
	ops := s.opsFor(rec)
	var want []byte
	for n := range 3 {
		feed := s.fifoShuffle(ops)
		r := NewRecord(simTeam, simColl, rec)
		for i := range feed {
			if err := r.Apply(&feed[i]); err != nil {
				return err
			}
		}
		got := encode(t, r)
		if n == 0 {
			want = got
		} else if !bytes.Equal(got, want) {
			return fmt.Errorf("replica %d diverged:\n%x\n%x", n, got, want)
		}
	}
	return nil
}

// lawMergeEqualsApply: merging every replica's state gives the state of
// applying every op, and a state survives its own encoding.
func lawMergeEqualsApply(t testing.TB, s *sim) error {
	rec := simRecords[s.rng.IntN(len(simRecords))]
	all := NewRecord(simTeam, simColl, rec)
	for _, op := range s.opsFor(rec) {
		if err := all.Apply(&op); err != nil {
			return err
		}
	}
	var states []*Record
	for _, r := range s.reps {
		states = append(states, r.recs[rec])
	}
	if m, a := encode(t, merged(t, states...)), encode(t, all); !bytes.Equal(m, a) {
		return fmt.Errorf("merge of states != apply of all ops:\n%x\n%x", m, a)
	}
	// A state survives its own encoding.
	b := encode(t, states[0])
	dec, err := UnmarshalRecord(b)
	if err != nil {
		return fmt.Errorf("decode own state: %w", err)
	}
	if b2 := encode(t, dec); !bytes.Equal(b, b2) {
		return fmt.Errorf("state changed through encoding:\n%x\n%x", b, b2)
	}
	return nil
}

// The reference model: the meaning of a set of ops, computed the naive way
// with no merging at all.

type refField struct {
	entries []Entry // live, sorted by ID
	removed []OpID  // every pred named on the field, sorted
}

// reference computes each field of a record from all of its ops.
func reference(ops []Op) map[string]refField {
	byField := map[string][]Op{}
	for _, op := range ops {
		if !slices.ContainsFunc(byField[op.Field], func(o Op) bool { return o.ID == op.ID }) {
			byField[op.Field] = append(byField[op.Field], op)
		}
	}
	out := map[string]refField{}
	for name, fops := range byField {
		named := map[OpID]bool{}
		for _, op := range fops {
			for _, p := range op.Pred {
				named[p] = true
			}
		}
		var f refField
		for id := range named {
			f.removed = append(f.removed, id)
		}
		for _, op := range fops {
			// Register: writes that no write overwrote. Set: adds whose
			// tag no remove names. Log: every append.
			if op.Kind != KindRemove && !named[op.ID] {
				f.entries = append(f.entries, Entry{ID: op.ID, Value: op.Value})
			}
		}
		slices.SortFunc(f.removed, OpID.Compare)
		slices.SortFunc(f.entries, func(a, b Entry) int { return a.ID.Compare(b.ID) })
		out[name] = f
	}
	return out
}

func lawAgainstReference(t testing.TB, s *sim) error {
	r := s.reps[s.rng.IntN(len(s.reps))]
	rec := simRecords[s.rng.IntN(len(simRecords))]
	var ops []Op
	for _, op := range r.ops {
		if op.Record == rec {
			ops = append(ops, op)
		}
	}
	return matchReference(r.recs[rec], ops)
}

func matchReference(st *Record, ops []Op) error {
	ref := reference(ops)
	if got, want := st.FieldNames(), sortedKeys(ref); !slices.Equal(got, want) {
		return fmt.Errorf("fields %v, reference %v", got, want)
	}
	var refConflicts []string
	for name, rf := range ref {
		f := st.Field(name)
		if !slices.EqualFunc(f.Entries, rf.entries, entryEqual) {
			return fmt.Errorf("field %s entries %v, reference %v", name, f.Entries, rf.entries)
		}
		switch f.Type {
		case Register:
			w, ok := f.Winner()
			if ok != (len(rf.entries) > 0) || ok && !entryEqual(w, rf.entries[len(rf.entries)-1]) {
				return fmt.Errorf("field %s winner %v, reference %v", name, w, rf.entries)
			}
			if f.Conflict() != (len(rf.entries) > 1) {
				return fmt.Errorf("field %s conflict %v with %d live values", name, f.Conflict(), len(rf.entries))
			}
			if len(rf.entries) > 1 {
				refConflicts = append(refConflicts, name)
			}
		case Set:
			want := map[string]bool{}
			for _, e := range rf.entries {
				want[string(e.Value)] = true
			}
			got := f.Members()
			if len(got) != len(want) {
				return fmt.Errorf("set %s members %v, reference %v", name, got, want)
			}
			for _, m := range got {
				if !want[string(m)] {
					return fmt.Errorf("set %s has %x, reference does not", name, m)
				}
			}
		}
	}
	// Deletion: the winning write to the delete register; the fields with
	// an entry that no delete or restore named are conflicts.
	deleted := false
	if d := ref[DeletedField].entries; len(d) > 0 {
		deleted = bytes.Equal(d[len(d)-1].Value, MustValue(true))
	}
	if st.Deleted() != deleted {
		return fmt.Errorf("deleted %v, reference %v", st.Deleted(), deleted)
	}
	var delConflicts []string
	if deleted {
		for name, rf := range ref {
			if name == DeletedField {
				continue
			}
			for _, e := range rf.entries {
				if !slices.Contains(ref[DeletedField].removed, e.ID) {
					delConflicts = append(delConflicts, name)
					break
				}
			}
		}
	}
	slices.Sort(delConflicts)
	if got := st.DeleteConflicts(); !slices.Equal(got, delConflicts) {
		return fmt.Errorf("delete conflicts %v, reference %v", got, delConflicts)
	}
	refConflicts = append(refConflicts, delConflicts...)
	slices.Sort(refConflicts)
	if got := st.Conflicts(); !slices.Equal(got, slices.Compact(refConflicts)) {
		return fmt.Errorf("conflicts %v, reference %v", got, refConflicts)
	}
	return nil
}

// lawDifferentialV1: every replica's state shows what the layout-1
// representation (v1model_test.go), fed the same ops in the same order,
// shows: the same live entries (so the same winners, set members and log
// entries), conflicts, deletion and delete conflicts; and the layout-1
// encoding of that state, converted, gives the same state.
func lawDifferentialV1(t testing.TB, s *sim) error {
	for _, rp := range s.reps {
		for _, id := range simRecords {
			ref := newRefRecord()
			for _, op := range rp.ops {
				if op.Record == id {
					if err := ref.Apply(&op); err != nil {
						return err
					}
				}
			}
			st := rp.recs[id]
			if err := sameVisible(st, ref); err != nil {
				return fmt.Errorf("record %s: %w", id, err)
			}
			conv, err := UnmarshalRecord(appendV1Record(nil, simTeam, simColl, id, ref))
			if err != nil {
				return fmt.Errorf("record %s: layout-1 state does not convert: %w", id, err)
			}
			if err := sameVisible(conv, ref); err != nil {
				return fmt.Errorf("record %s converted from layout 1: %w", id, err)
			}
		}
	}
	return nil
}

func sameVisible(st *Record, ref *refRecord) error {
	if got, want := st.FieldNames(), sortedKeys(ref.Fields); !slices.Equal(got, want) {
		return fmt.Errorf("fields %v, layout 1 %v", got, want)
	}
	for name, rf := range ref.Fields {
		f := st.Field(name)
		if f.Type != rf.Type || !slices.EqualFunc(f.Entries, rf.Entries, entryEqual) {
			return fmt.Errorf("field %s: %s %v, layout 1 %s %v", name, f.Type, f.Entries, rf.Type, rf.Entries)
		}
	}
	if st.Deleted() != ref.Deleted() {
		return fmt.Errorf("deleted %v, layout 1 %v", st.Deleted(), ref.Deleted())
	}
	if got, want := st.DeleteConflicts(), ref.DeleteConflicts(); !slices.Equal(got, want) {
		return fmt.Errorf("delete conflicts %v, layout 1 %v", got, want)
	}
	if got, want := st.Conflicts(), ref.Conflicts(); !slices.Equal(got, want) {
		return fmt.Errorf("conflicts %v, layout 1 %v", got, want)
	}
	return nil
}

// lawSkipThenLate: a replica that holds one op back (Skip), applies the
// ops after it, and applies it late ends in the state of applying all in
// order; while held back, its state merges with the others commutatively
// and keeps the op (merging the in-order state brings it in).
func lawSkipThenLate(t testing.TB, s *sim) error {
	rec := simRecords[s.rng.IntN(len(simRecords))]
	ops := s.opsFor(rec)
	if len(ops) < 2 {
		return nil
	}
	k := s.rng.IntN(len(ops))
	inOrder := NewRecord(simTeam, simColl, rec)
	held := NewRecord(simTeam, simColl, rec)
	for i := range ops {
		if err := inOrder.Apply(&ops[i]); err != nil {
			return err
		}
		if i == k {
			held.Skip(ops[i].ID)
			continue
		}
		if err := held.Apply(&ops[i]); err != nil {
			return err
		}
	}
	if ab, ba := encode(t, merged(t, held, inOrder)), encode(t, merged(t, inOrder, held)); !bytes.Equal(ab, ba) {
		return fmt.Errorf("held ∪ in-order != in-order ∪ held:\n%x\n%x", ab, ba)
	}
	if m := merged(t, held, inOrder); !bytes.Equal(encode(t, m), encode(t, inOrder)) {
		return fmt.Errorf("held ∪ in-order != in-order:\n%x\n%x", encode(t, m), encode(t, inOrder))
	}
	dec, err := UnmarshalRecord(encode(t, held))
	if err != nil || !bytes.Equal(encode(t, dec), encode(t, held)) {
		return fmt.Errorf("held state does not survive its encoding: %v", err)
	}
	if err := held.Apply(&ops[k]); err != nil {
		return err
	}
	if a, b := encode(t, held), encode(t, inOrder); !bytes.Equal(a, b) {
		return fmt.Errorf("late apply != in order:\n%x\n%x", a, b)
	}
	return nil
}

func entryEqual(a, b Entry) bool { return a.ID == b.ID && bytes.Equal(a.Value, b.Value) }

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestMergeLaws checks every law on the same random simulations: each law
// gets cases(10000) cases; -long multiplies them.
func TestMergeLaws(t *testing.T) {
	laws := []struct {
		name  string
		check func(testing.TB, *sim) error
	}{
		{"commutative", lawMergeCommutative},
		{"associative", lawMergeAssociative},
		{"idempotent", lawMergeIdempotent},
		{"convergence", lawConvergence},
		{"merge equals apply", lawMergeEqualsApply},
		{"reference model", lawAgainstReference},
		{"differential against layout 1", lawDifferentialV1},
		{"skip then late", lawSkipThenLate},
	}
	forCases(t, cases(10000), func(t testing.TB, s *sim) error {
		for _, law := range laws {
			if err := law.check(t, s); err != nil {
				return fmt.Errorf("%s: %w", law.name, err)
			}
		}
		return nil
	})
}
