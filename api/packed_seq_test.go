package api_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/doorstep-health/doorstep/api"
)

// TestRepackSeq: a block packed under seq 0 and given another seq by
// RepackSeq is, byte for byte, the block PackPush writes under that seq,
// decodes to the same ops, and goes on the wire (UnpackPushBlocks) as
// pieces of one change; blocks of several changes or another version are
// refused.
func TestRepackSeq(t *testing.T) {
	for _, c := range samplePush(t, 3, 4, 40) {
		for _, seq := range []uint64{0, 1, 127, 128, 1 << 40, ^uint64(0)} {
			zero, err := api.PackPush([]api.Change{{Ops: c.Ops}})
			if err != nil {
				t.Fatal(err)
			}
			want, err := api.PackPush([]api.Change{{Seq: seq, Ops: c.Ops}})
			if err != nil {
				t.Fatal(err)
			}
			prefix := []byte("kept")
			got, err := api.RepackSeq(prefix, zero, seq)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:4], prefix) || !bytes.Equal(got[4:], want) {
				t.Fatalf("seq %d: repacked block differs from PackPush's", seq)
			}
		}
	}
	// Pieces of one change, each repacked, join on the wire.
	cs := samplePush(t, 4, 1, 60)
	var blocks [][]byte
	for i := 0; i < len(cs[0].Ops); i += 25 {
		b, err := api.PackPush([]api.Change{{Ops: cs[0].Ops[i:min(i+25, len(cs[0].Ops))]}})
		if err != nil {
			t.Fatal(err)
		}
		if b, err = api.RepackSeq(nil, b, 42); err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, b)
	}
	out, err := api.UnpackPushBlocks(blocks, 0)
	if err != nil || len(out) != 1 || out[0].Seq != 42 || !reflect.DeepEqual(out[0].Ops, cs[0].Ops) {
		t.Fatalf("repacked pieces: %d changes (%v)", len(out), err)
	}
	two, err := api.PackPush([]api.Change{{Seq: 1, Ops: cs[0].Ops[:2]}, {Seq: 2, Ops: cs[0].Ops[2:4]}})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"two changes": two, "empty": nil, "version 2": {2, 0, 0, 1, 0, 0}, "cut": two[:3]} {
		if _, err := api.RepackSeq(nil, b, 1); !errors.Is(err, api.ErrPacked) {
			t.Errorf("%s: %v, want ErrPacked", name, err)
		}
	}
}

// FuzzRepackSeq: RepackSeq never panics, refuses only with ErrPacked, and
// what it accepts decodes (UnpackPush) exactly as the input does, to the
// same ops under the new seq, or fails as the input does.
//
//	go test -run '^$' -fuzz FuzzRepackSeq -fuzztime 30s ./api
func FuzzRepackSeq(f *testing.F) {
	for _, c := range samplePush(f, 5, 3, 9) {
		b, err := api.PackPush([]api.Change{{Ops: c.Ops}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint64(c.Seq))
	}
	f.Fuzz(func(t *testing.T, in []byte, seq uint64) {
		out, err := api.RepackSeq(nil, in, seq)
		if err != nil {
			if !errors.Is(err, api.ErrPacked) {
				t.Fatalf("error does not wrap ErrPacked: %v", err)
			}
			return
		}
		got, gotErr := api.UnpackPush(out, 0)
		want, wantErr := api.UnpackPush(in, 0)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("repacked decodes with %v, the input with %v", gotErr, wantErr)
		}
		if wantErr != nil {
			return
		}
		if len(got) != 1 || len(want) != 1 || got[0].Seq != seq {
			t.Fatalf("repacked: %d changes, input %d", len(got), len(want))
		}
		want[0].Seq = seq
		if !samePush(got, want) {
			t.Fatal("repacked block decodes to other ops")
		}
	})
}
