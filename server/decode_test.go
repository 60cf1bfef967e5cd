package server

import (
	"bytes"
	"errors"
	"strconv"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

// validRequest returns the msgpack bytes of a small, valid sync request.
func validRequest(t testing.TB) []byte {
	t.Helper()
	dev := crdt.ReplicaID{0xd0, 0x0d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	r := crdt.NewRecord("wigan", "people", "p1")
	op := r.Write(crdt.OpID{Time: crdt.MakeTimestamp(1_763_715_600_000, 0), Replica: dev}, "given_name", crdt.MustValue("Edna"))
	req := api.SyncRequest{Protocol: api.ProtocolVersion, Replica: dev, Clock: op.ID.Time, Changes: []api.Change{{Seq: 1, Ops: []crdt.Op{op}}}, Cursor: []byte{1, 2, 3}}
	b, err := msgpack.Marshal(&req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostileBodies are request bodies built to make a naive decoder allocate,
// recurse or panic.
func hostileBodies(t testing.TB) map[string][]byte {
	valid := validRequest(t)
	huge := func(prefix ...byte) []byte {
		// {"v":1,"c":<prefix>} — the declared length lies about the rest.
		b := []byte{0x82, 0xa1, 'v', 0x01, 0xa1, 'c'}
		return append(b, prefix...)
	}
	deep := func(n int) []byte {
		b := []byte{0x81, 0xa1, 'c'}
		b = append(b, bytes.Repeat([]byte{0x91}, n)...)
		return append(b, 0xc0)
	}
	m := map[string][]byte{
		"empty":                 {},
		"nil":                   {0xc0},
		"array32 4G":            huge(0xdd, 0xff, 0xff, 0xff, 0xff),
		"array16 65535":         huge(0xdc, 0xff, 0xff),
		"map32 4G":              huge(0xdf, 0xff, 0xff, 0xff, 0xff),
		"str32 4G":              huge(0xdb, 0xff, 0xff, 0xff, 0xff),
		"bin32 4G":              huge(0xc6, 0xff, 0xff, 0xff, 0xff),
		"ext32 4G":              huge(0xc9, 0xff, 0xff, 0xff, 0xff, 0x01),
		"top-level array32 4G":  {0xdd, 0xff, 0xff, 0xff, 0xff},
		"top-level map32 4G":    {0xdf, 0xff, 0xff, 0xff, 0xff},
		"deep nesting 100000":   deep(100_000),
		"deep nesting 33":       deep(33),
		"wrong type: version":   {0x81, 0xa1, 'v', 0xa1, 'x'},
		"wrong type: changes":   {0x81, 0xa1, 'c', 0xa3, 'a', 'b', 'c'},
		"wrong type: top array": {0x91, 0x01},
		"replica 17 bytes":      append([]byte{0x81, 0xa1, 'd', 0xc4, 17}, make([]byte, 17)...),
		"op id 23 bytes":        append([]byte{0x81, 0xa1, 'c', 0x91, 0x82, 0xa1, 's', 0x01, 0xa1, 'o', 0x91, 0x81, 0xa1, 'i', 0xc4, 23}, make([]byte, 23)...),
		"never-used byte c1":    {0x81, 0xa1, 'v', 0xc1},
		"trailing bytes":        append(append([]byte{}, valid...), 0x00),
		"many small maps":       append([]byte{0x81, 0xa1, 'c', 0xdc, 0xff, 0xff}, bytes.Repeat([]byte{0x80}, 0xffff)...),
	}
	for _, n := range []int{1, 2, 7, len(valid) / 2, len(valid) - 1} {
		m["truncated at "+strconv.Itoa(n)] = valid[:n]
	}
	return m
}

func TestDecodeSyncRequestHostile(t *testing.T) {
	if _, err := DecodeSyncRequest(validRequest(t), DefaultLimits); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	for name, b := range hostileBodies(t) {
		t.Run(name, func(t *testing.T) {
			req, err := DecodeSyncRequest(b, DefaultLimits)
			var e *Error
			if name == "many small maps" {
				// Within limits: 65535 empty changes decode; the engine
				// refuses them (seq 0) later.
				if err != nil {
					t.Fatalf("within limits: %v", err)
				}
				return
			}
			if err == nil || !errors.As(err, &e) {
				t.Fatalf("decoded %+v, err %v", req, err)
			}
			if e.Code != api.CodeMalformedBody && e.Code != api.CodeBodyTooLarge {
				t.Fatalf("code %s", e.Code)
			}
		})
	}
}

// FuzzDecodeSyncRequest feeds arbitrary bytes to the sync request decoder:
// it must never panic, and what it accepts must re-encode to a fixpoint.
func FuzzDecodeSyncRequest(f *testing.F) {
	f.Add(validRequest(f))
	for _, b := range hostileBodies(f) {
		if len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeSyncRequest(b, DefaultLimits)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Code != api.CodeMalformedBody && e.Code != api.CodeBodyTooLarge) {
				t.Fatalf("error without a 4xx code: %v", err)
			}
			return
		}
		once, err := msgpack.Marshal(req)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := DecodeSyncRequest(once, DefaultLimits)
		if err != nil {
			t.Fatalf("re-decode of %x: %v", once, err)
		}
		twice, err := msgpack.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(once, twice) {
			t.Fatalf("not a fixpoint:\n%x\n%x", once, twice)
		}
	})
}
