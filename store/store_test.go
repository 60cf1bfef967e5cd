package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/crdt"
)

func TestKeysRoundTripAndPrefixFree(t *testing.T) {
	// Names chosen so that naive "/"-joined keys would collide or nest.
	names := []string{"a", "a/b", "ab", "", "b\x00c", "wigan", "wig"}
	for _, team := range names {
		for _, coll := range names {
			for _, id := range names {
				k := RecordKey(team, coll, id)
				ref, err := ParseRecordKey(k)
				if err != nil || ref != (RecordRef{team, coll, id}) {
					t.Fatalf("record key %q/%q/%q: %+v %v", team, coll, id, ref, err)
				}
				ck := ConflictKey(team, coll, id)
				if ref, err := ParseConflictKey(ck); err != nil || ref != (RecordRef{team, coll, id}) {
					t.Fatalf("conflict key: %+v %v", ref, err)
				}
				ms, ref, err := ParseChangedKey(ChangedKey(team, 12345, coll, id))
				if err != nil || ms != 12345 || ref != (RecordRef{team, coll, id}) {
					t.Fatalf("changed key: %d %+v %v", ms, ref, err)
				}
				for _, other := range names {
					if other != team && bytes.HasPrefix(k, RecordPrefix(other)) {
						t.Fatalf("record key of team %q matches the prefix of team %q", team, other)
					}
				}
			}
		}
	}
	if pos, err := LogPos(LogKey("wigan", 77)); err != nil || pos != 77 {
		t.Fatalf("log pos %d %v", pos, err)
	}
	// Log keys of one team sort by position.
	var keys [][]byte
	for _, p := range []uint64{300, 2, 1 << 40, 255, 256} {
		keys = append(keys, LogKey("t", p))
	}
	slices.SortFunc(keys, bytes.Compare)
	var got []uint64
	for _, k := range keys {
		p, _ := LogPos(k)
		got = append(got, p)
	}
	if !slices.IsSorted(got) {
		t.Fatalf("log keys do not sort by position: %v", got)
	}
	if _, err := ParseRecordKey([]byte("r/\xff")); !errors.Is(err, ErrBadKey) {
		t.Fatalf("bad key: %v", err)
	}
	if id, err := QuarantineID(QuarantineKey(9)); err != nil || id != 9 {
		t.Fatalf("quarantine id %d %v", id, err)
	}
}

func TestValuesRoundTrip(t *testing.T) {
	v := EncodeRecordValue(1234, []byte("rec"))
	ms, rec, err := DecodeRecordValue(v)
	if err != nil || ms != 1234 || string(rec) != "rec" {
		t.Fatalf("record value: %d %q %v", ms, rec, err)
	}
	if _, _, err := DecodeRecordValue([]byte{9}); !errors.Is(err, ErrBadValue) {
		t.Fatalf("bad record value: %v", err)
	}
	le := LogEntry{Author: "ann", Replica: crdt.NewReplicaID(), Seq: 3, ReceivedMS: 99, Ops: []crdt.Op{{
		ID: crdt.OpID{Time: 5, Replica: crdt.NewReplicaID()}, Team: "t", Collection: "c", Record: "r", Field: "f",
		Kind: crdt.KindWrite, Value: crdt.MustValue(1),
	}}}
	b, err := Encode(&le)
	if err != nil {
		t.Fatal(err)
	}
	var got LogEntry
	if err := Decode(b, &got); err != nil || got.Author != "ann" || got.Seq != 3 || len(got.Ops) != 1 || got.Ops[0].ID != le.Ops[0].ID {
		t.Fatalf("log entry: %+v %v", got, err)
	}
	if err := Decode([]byte{0xc1}, &got); !errors.Is(err, ErrBadValue) {
		t.Fatalf("bad log entry: %v", err)
	}
}

// TestChangedKeyOneAllocation: ChangedKey writes the bytes the layout
// says (prefix, team, time, collection, ID) for names of every length
// class, in one allocation.
func TestChangedKeyOneAllocation(t *testing.T) {
	for _, n := range []int{0, 1, 31, 127, 128, 300} {
		name := strings.Repeat("n", n)
		want := binary.BigEndian.AppendUint64(ChangedPrefix("wigan"+name), uint64(1795253400123))
		want = appendStr(appendStr(want, "people"+name), "p1"+name)
		if got := ChangedKey("wigan"+name, 1795253400123, "people"+name, "p1"+name); !bytes.Equal(got, want) {
			t.Fatalf("names +%d bytes: %x, want %x", n, got, want)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _ = ChangedKey("wigan", 1, "people", "p1") }); a != 1 {
		t.Fatalf("%v allocations, want 1", a)
	}
}
